"""The MCP server: Ferrodex tools for AI agents (official ``mcp`` SDK 2.x, ``MCPServer``).

The tools are plain (sync) functions: the SDK runs them on a worker thread, where the Django ORM
may be used directly. Each call returns structured content (a pydantic model, advertised as the
tool's output schema) plus a short text for clients that only read text. Domain errors become
tool errors (``isError``) with the message a user can act on; a crash is logged here and reaches
the client only as a generic tool error, so the server keeps serving.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any
from uuid import UUID

from django.db import DatabaseError, close_old_connections
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, StrictBool, ValidationError

from config.health import model_readiness
from crates import projects, trait_graph
from crates import selectors as crate_selectors
from crates import services as crate_services
from crates.errors import FerrodexError, InvalidInput, database_unavailable
from crates.fronts import (
    MAX_ITEM_PATH_LENGTH,
    MAX_NAME_INPUT,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    MAX_QUERY_LENGTH,
    MAX_SEARCH_LIMIT,
    crate_page,
    item_detail,
    search_results,
)
from crates.lockfiles import MAX_LOCKFILE_BYTES, MAX_MANIFEST_BYTES
from crates.schemas import CrateDetailOut, CratePage, ImplementationsOut, ItemOut, LockfileOut, OpenModel, SearchOut
from crates.search.scope import KINDS
from jobs import selectors as job_selectors
from jobs import services as job_services
from jobs.schemas import JobAcceptedOut, JobEventOut, JobOut

logger = logging.getLogger(__name__)

SERVER_NAME = "ferrodex"
ITEM_TEXT_DOCS_LIMIT = 6000

INSTRUCTIONS = """\
Ferrodex holds the documentation of Rust crates (from docs.rs) and searches it.
Typical use: search_rust_docs to find items, then get_rust_item for the full docs of one path.
search_rust_docs also takes rustdoc type queries: '&str -> Value', 'Duration -> Sleep', '-> JoinHandle'.
list_rust_implementations shows who implements a trait, or what a type implements.
If a crate is missing (list_rust_crates, or a "not found" error), add it with add_rust_crate: it returns
a job id at once; poll check_rust_status(job_id) every few seconds until the status is "complete"
(or "failed", with an error that says why), then search again.
Working on a project? Give its Cargo.lock (and Cargo.toml) once to add_rust_crates_from_lockfile with a
project name, then pass project=... to search_rust_docs and get_rust_item: answers come from exactly the
locked versions, and items behind a crate feature say which feature (and the Cargo.toml line) they need."""


# --- output models (the crate, item and job shapes are shared with the API: crates/jobs.schemas) ---


class JobInfo(JobOut):
    events: list[JobEventOut] | None = Field(None, description="Recent events, oldest first (check_rust_status)")


class JobAccepted(JobAcceptedOut):
    job: JobInfo


class SystemStatus(OpenModel):
    queued: int = 0
    running: int = 0
    failed_24h: int | None = None
    complete_24h: int | None = None
    workers_alive: int = 0
    oldest_queued_age_s: float | None = None
    model: dict[str, Any] | None = Field(
        None, description="Whether this server's embedding model is ready (ready, preload state, a note if not)"
    )


class StatusResult(BaseModel):
    job: JobInfo | None = Field(None, description="The job asked for, when a job_id was given")
    system: SystemStatus | None = Field(None, description="The queue summary, when no job_id was given")


# --- helpers ---------------------------------------------------------------------------------


@contextmanager
def tool_call(tool: str) -> Iterator[None]:
    """Database hygiene around a tool call, and domain errors turned into tool errors."""
    # Tool threads are long-lived; drop connections the database or CONN_MAX_AGE has retired.
    close_old_connections()
    try:
        yield
    except FerrodexError as exc:
        logger.info("MCP tool %s refused: %s", tool, exc.message)
        raise ToolError(exc.message) from exc
    except DatabaseError as exc:
        if (unavailable := database_unavailable(exc)) is None:
            raise
        logger.warning("MCP tool %s: %s", tool, unavailable.message)
        raise ToolError(unavailable.message) from exc
    finally:
        close_old_connections()


def _result(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=model.model_dump(mode="json")
    )


def _job_id(value: str) -> UUID:
    try:
        return UUID(value.strip())
    except (ValueError, AttributeError):
        raise InvalidInput(
            f"{value[:60]!r} is not a job id; job ids are UUIDs as returned by add_rust_crate or remove_rust_crate."
        ) from None


def _job_info(job: Any, *, events: bool = False) -> JobInfo:
    return JobInfo.model_validate(job_selectors.job_as_dict(job, events=events))


def _job_line(job: JobInfo) -> str:
    version = job.resolved_version or job.version or ("latest" if job.operation == "ingest" else "all versions")
    line = f"Job {job.id}: {job.operation} {job.crate} {version} is {job.status}"
    if job.status == "running":
        line += f", {job.progress:g}% ({job.stage or 'starting'}"
        line += f": {job.stage_message})" if job.stage_message else ")"
    if job.status == "queued" and job.stage_message:  # waiting to retry: "Retrying at 03:13:10 UTC (in 30 s): …"
        line += f" ({job.stage_message})"
    if job.status == "complete" and job.operation == "ingest":
        line += f": {job.counters.documents} items, {job.counters.chunks} chunks"
    if job.status in ("failed", "cancelled") and job.error:
        line += f": {job.error.message}"
    return line + "."


def _gate_line(gate) -> str:
    """The short form of a gate in a search hit: what it needs, marked when the project lacks it."""
    if gate.needs_features:
        return f"NEEDS FEATURE {', '.join(gate.needs_features)} (not enabled by the project): {gate.cargo_toml}"
    return gate.text


def _features_note(crate) -> str:
    features = crate.features or {}
    names = list(features.get("features") or {})
    if not names:
        return ""
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    return f"; features: {shown} (default: {', '.join(features.get('default') or []) or 'none'})"


NO_WORKER = "No worker is running: queued jobs wait until one is started ('manage.py qcluster', or scripts/up)."


def _no_worker_note(job: JobInfo) -> str:
    """Said wherever an agent waits on a queued job: runmcp itself runs no worker, so it could poll forever."""
    return f" {NO_WORKER}" if job.status == "queued" and job_selectors.workers_alive() == 0 else ""


def _accepted(result: Any, *, verb: str) -> CallToolResult:
    model = JobAccepted(job=_job_info(result.job), deduplicated=result.deduplicated)
    prefix = "An identical job is already under way" if model.deduplicated else f"Queued {verb}"
    text = (
        f"{prefix}: {_job_line(model.job)} "
        f'Poll check_rust_status(job_id="{model.job.id}") until the status is complete or failed.'
        + _no_worker_note(model.job)
    )
    return _result(model, text)


# --- tools -----------------------------------------------------------------------------------

Name = Annotated[str, Field(max_length=MAX_NAME_INPUT, description="Crate name as on crates.io, e.g. 'serde_json'")]
OptVersion = Annotated[
    str | None,
    Field(max_length=MAX_NAME_INPUT, description="Exact SemVer version such as '1.0.3'; omit for the newest"),
]
OptProject = Annotated[
    str | None,
    Field(max_length=MAX_NAME_INPUT, description="A project saved by add_rust_crates_from_lockfile: exactly the "
          "versions its Cargo.lock locks, never a newer release, and whether it enables each item's features"),
]
JobId = Annotated[str, Field(max_length=100, description="A job id returned by add_rust_crate or remove_rust_crate")]
# true/false only, as in the JSON API: lax validation would take "yes" or 1 and run what was not asked for.
Flag = StrictBool


def add_rust_crate(
    name: Name,
    version: OptVersion = None,
    force: Annotated[Flag, Field(description="Re-ingest even if this version is already stored")] = False,
) -> Annotated[CallToolResult, JobAccepted]:
    """Add a Rust crate's documentation (from docs.rs) to the index. Returns at once with a job id;
    ingestion runs in the background and takes seconds to minutes. Then call check_rust_status with
    that job_id every few seconds until its status is "complete" (or "failed"), and search with
    search_rust_docs. Adding a crate that is already queued or running returns the existing job."""
    with tool_call("add_rust_crate"):
        result = job_services.enqueue_ingest(name=name, version=version, force=force, requested_by="mcp")
        return _accepted(result, verb="ingest")


def add_rust_crates_from_lockfile(
    lockfile: Annotated[str, Field(max_length=MAX_LOCKFILE_BYTES, description="The text of the project's Cargo.lock")],
    manifest: Annotated[
        str | None,
        Field(max_length=MAX_MANIFEST_BYTES, description="The text of its Cargo.toml (optional; workspaces too): "
              "which dependencies are direct and which features the project enables"),
    ] = None,
    direct_only: Annotated[
        Flag, Field(description="Only the direct dependencies (normal, dev and build), not the whole tree")
    ] = False,
    project: Annotated[
        str | None,
        Field(max_length=MAX_NAME_INPUT, description="Save the locked versions under this name; then pass "
              "project=... to search_rust_docs and get_rust_item"),
    ] = None,
) -> Annotated[CallToolResult, LockfileOut]:
    """Add the documentation of the exact versions a project's Cargo.lock locks: one ingest job per
    crates.io package, each at its locked version (never a newer release). Returns at once with the jobs
    and every package skipped with its reason (path/workspace, git, other registries, already ingested).
    With project="name", later searches and item lookups with project="name" read exactly those versions,
    and (given the Cargo.toml) mark items behind a crate feature the project does not enable. Poll
    check_rust_status for the jobs, as after add_rust_crate."""
    with tool_call("add_rust_crates_from_lockfile"):
        result = projects.add_from_lockfile(
            lockfile=lockfile, manifest=manifest, direct_only=direct_only,
            project=projects.validate_project_name(project) if project is not None else None, requested_by="mcp",
        )  # fmt: skip
        model = LockfileOut.model_validate(dataclasses.asdict(result))
        return _result(model, _lockfile_text(model))


def _lockfile_text(model: LockfileOut) -> str:
    fresh = [j for j in model.jobs if not j.deduplicated]
    lines = [
        f"Cargo.lock v{model.lockfile_version}, {model.packages} packages: {len(fresh)} ingest job(s) queued, "
        f"{len(model.jobs) - len(fresh)} already under way, {len(model.skipped)} skipped."
    ]
    if model.project:
        lines.append(f'Saved as project {model.project!r}: pass project="{model.project}" to search_rust_docs '
                     "and get_rust_item.")
    if model.direct_from:
        lines.append(f"Direct dependencies from the {model.direct_from}.")
    for job in model.jobs[:40]:
        again = " (already queued)" if job.deduplicated else ""
        lines.append(f"- {job.crate} {job.version}: job {job.job['id']}{again}")
    if len(model.jobs) > 40:
        lines.append(f"… and {len(model.jobs) - 40} more jobs (all in the structured content)")
    reasons: dict[str, list[str]] = {}
    for skipped in model.skipped:
        reasons.setdefault(skipped.reason, []).append(f"{skipped.crate} {skipped.version}")
    for reason, names in reasons.items():
        lines.append(f"Skipped ({reason}): {', '.join(names[:15])}{', …' if len(names) > 15 else ''}")
    lines += model.warnings
    if model.jobs:
        lines.append("Poll check_rust_status(job_id) for each job (or without a job_id for the queue).")
    return "\n".join(lines)


def check_rust_status(
    job_id: Annotated[str | None, Field(max_length=100, description="A job id; omit for the queue summary")] = None,
) -> Annotated[CallToolResult, StatusResult]:
    """Check a job started by add_rust_crate or remove_rust_crate: status (queued, running, complete,
    failed, cancelled), progress 0-100, stage, counters and the error if it failed. Poll it every few
    seconds after add_rust_crate. Without a job_id, summarises the system: queued, running and recently
    failed jobs, how many workers are alive (if none are, queued jobs will not start) and whether the
    search model is ready."""
    with tool_call("check_rust_status"):
        if job_id:
            job = JobInfo.model_validate(job_selectors.job_status(job_id=_job_id(job_id)))
            return _result(StatusResult(job=job), _job_line(job) + _no_worker_note(job))
        summary = SystemStatus.model_validate({**job_selectors.health_summary(), "model": model_readiness()})
        text = (
            f"{summary.queued} queued, {summary.running} running, {summary.failed_24h or 0} failed in 24 h; "
            f"{summary.workers_alive} worker(s) alive. "
            + ("The search model is ready." if summary.model["ready"] else f"Search model: {summary.model['note']}.")
        )
        if summary.workers_alive == 0:
            text += f" {NO_WORKER}"
        return _result(StatusResult(system=summary), text)


def list_rust_crates(
    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 20,
    search: Annotated[str | None, Field(max_length=MAX_NAME_INPUT, description="Filter by crate name")] = None,
    include_deleted: Annotated[Flag, Field(description="Also list soft-deleted crates")] = False,
) -> Annotated[CallToolResult, CratePage]:
    """List the crates in the index with their newest version, item counts and the state of their
    latest job. Use it to see whether a crate is already available before adding it."""
    with tool_call("list_rust_crates"):
        model = CratePage.model_validate(
            crate_page(search=search, include_deleted=include_deleted, page=page, page_size=page_size)
        )
        pages = max(model.pages, 1)
        where = f"page {model.page} of {pages}"
        if model.page > pages:
            where = f"page {model.page} is past the last page ({pages})"
        lines = [f"{model.total} crate(s); {where}."]
        for crate in model.items:
            state = " (deleted)" if crate.deleted else ""
            version = crate.latest_version or "no version yet"
            if len(crate.versions) > 1:  # older versions are searchable too, with version=...
                version += f" (also {', '.join(crate.versions[1:6])}{', …' if len(crate.versions) > 6 else ''})"
            job = f", last job {crate.latest_job_status}" if crate.latest_job_status else ""
            lines.append(f"- {crate.name} {version}{state}: {crate.documents} items{job}{_features_note(crate)}")
        return _result(model, "\n".join(lines))


def remove_rust_crate(
    name: Name,
    version: Annotated[
        str | None,
        Field(max_length=MAX_NAME_INPUT, description="Remove only this exact version; omit for the whole crate"),
    ] = None,
    soft_delete: Annotated[
        Flag, Field(description="Hide the crate from list and search (reversible) instead of deleting it")
    ] = False,
) -> Annotated[CallToolResult, JobAccepted]:
    """Remove a crate (or one version of it) from the index, in a background job. Returns the job at
    once; poll check_rust_status for it. soft_delete hides the crate but keeps its data."""
    with tool_call("remove_rust_crate"):
        result = job_services.enqueue_removal(name=name, version=version, soft=soft_delete, requested_by="mcp")
        return _accepted(result, verb="removal")


def restore_rust_crate(name: Name) -> Annotated[CallToolResult, CrateDetailOut]:
    """Undo a soft delete (remove_rust_crate with soft_delete): the crate is listed and searchable again
    with the documentation it had. Immediate, no job. Restoring a crate that is not deleted changes nothing."""
    with tool_call("restore_rust_crate"):
        crate = crate_services.restore_crate(name=name)
        model = CrateDetailOut.model_validate(crate_selectors.get_crate(name=crate.name))
        version = model.latest_version or "no version yet"
        return _result(model, f"{model.name} {version} is listed and searchable: {model.documents} items.")


def cancel_rust_job(job_id: JobId) -> Annotated[CallToolResult, JobInfo]:
    """Cancel a queued or running job (an ingest or removal). A running job stops at its next batch
    and leaves the previously stored documentation untouched. Finished jobs cannot be cancelled."""
    with tool_call("cancel_rust_job"):
        job = _job_info(job_services.cancel_job(job_id=_job_id(job_id)))
        return _result(job, f"Cancellation requested. {_job_line(job)}")


def search_rust_docs(
    query: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_QUERY_LENGTH,
            description="What you need, in words, an identifier/path such as 'Mutex::lock', or a type query in "
            "rustdoc syntax: '&str -> Value', 'Duration -> Sleep', '-> JoinHandle<T>', 'type:Duration'",
        ),
    ],
    crate: Annotated[str | None, Field(max_length=MAX_NAME_INPUT, description="Only this crate")] = None,
    version: OptVersion = None,
    kind: Annotated[
        str | None,
        Field(
            max_length=300,
            description="Only these item kinds, comma-separated, e.g. 'struct,trait'. Kinds: "
            + ", ".join(sorted(KINDS)),
        ),
    ] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_SEARCH_LIMIT)] = 10,
    project: OptProject = None,
) -> Annotated[CallToolResult, SearchOut]:
    """Search the documentation of the indexed Rust crates by meaning, keywords and item paths, or by type
    as docs.rs does ('&str -> Value': functions taking a &str and giving a Value, also inside Result/Option;
    '-> C', 'A ->', generics like 'Vec<T> -> usize'). Returns the best items with path, kind, signature, a
    snippet, the docs.rs URL and, for a type query, how each matched ('Duration → Sleep'). Use get_rust_item with a
    result's crate and path for its full documentation. If the crate is not indexed, add_rust_crate it."""
    with tool_call("search_rust_docs"):
        model = SearchOut.model_validate(
            search_results(query=query, crate=crate, version=version, kind=kind, limit=limit, project=project)
        )
        notice = [model.notice] if model.notice else []
        if not model.results:
            text = f"No results for {model.query!r}. Is the crate indexed? See list_rust_crates."
            return _result(model, "\n".join([*notice, text]))
        lines = [*notice, f"{model.count} result(s) for {model.query!r}:"]
        for n, hit in enumerate(model.results, 1):
            pending = f" [semantic: {hit.semantic}]" if hit.semantic else ""
            lines.append(f"{n}. {hit.path} ({hit.kind}, {hit.crate} {hit.version}) {hit.url}{pending}")
            if hit.twins:
                lines.append(f"   same docs also at: {', '.join(hit.twins)}")
            if hit.type_match:
                lines.append(f"   type match: {hit.type_match}")
            if hit.signature:
                lines.append(f"   {hit.signature.splitlines()[0][:200]}")
            if hit.snippet:
                lines.append(f"   {' '.join(hit.snippet.split())[:240]}")
            if hit.gate is not None:
                lines.append(f"   {_gate_line(hit.gate)}")
        return _result(model, "\n".join(lines))


def get_rust_item(
    crate: Name,
    path: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_ITEM_PATH_LENGTH,
            description="The item's public path, e.g. 'tokio::sync::Mutex' (as returned by search_rust_docs)",
        ),
    ],
    version: OptVersion = None,
    project: OptProject = None,
) -> Annotated[CallToolResult, ItemOut]:
    """Full documentation of one item (struct, trait, function, method, module...) by its public path:
    signature, docs in Markdown, deprecation, parent and children (methods, fields, variants, items of a
    module). Use after search_rust_docs. An unknown path gives an error listing close matches."""
    with tool_call("get_rust_item"):
        model = ItemOut.model_validate(item_detail(crate=crate, path=path, version=version, project=project))
        return _result(model, _item_text(model))


def list_rust_implementations(
    crate: Name,
    trait: Annotated[
        str | None,
        Field(max_length=MAX_ITEM_PATH_LENGTH, description="A trait by path or name, e.g. 'Serialize'"),
    ] = None,
    type: Annotated[
        str | None,
        Field(max_length=MAX_ITEM_PATH_LENGTH, description="A type by path or name, e.g. 'serde_json::Value'"),
    ] = None,
    version: OptVersion = None,
) -> Annotated[CallToolResult, ImplementationsOut]:
    """The trait graph of a crate: with trait, the types implementing it (this crate's types, and other types
    by name, e.g. Serialize for bool); with type, the traits it implements, each with the impl's generics and
    bounds ('impl<T> From<T> for Value where T: Into<String>'); with both, whether and how that impl exists."""
    with tool_call("list_rust_implementations"):
        found = trait_graph.list_implementations(crate=crate, trait=trait, type=type, version=version)
        model = ImplementationsOut.model_validate(found)
        subject = " for ".join(x for x in (model.trait and f"trait {model.trait}", model.type and f"type {model.type}")
                               if x)
        lines = [f"{model.count} implementation(s) of {subject} in {model.crate} {model.version}:"]
        lines += [f"- {i.declaration}" + (f" where {i.bounds}" if i.bounds else "")
                  + (" (blanket)" if i.blanket else "") for i in model.implementations[:100]]
        return _result(model, "\n".join(lines))


# Traits the compiler implements for its own bookkeeping (derived PartialEq/Eq); no code names them.
_COMPILER_MARKERS = frozenset({"StructuralPartialEq", "StructuralEq"})


_MATCH_NOTES = {
    "alias": "a public re-export (alias) of this item",
    "suffix": "the only item whose path ends with it",
    "case_insensitive": "the only item whose path matches it ignoring case",
}


def _implemented_trait(declaration: str) -> str:
    """``impl<'de> Deserialize<'de> for Value`` -> ``Deserialize<'de>``."""
    head = declaration.rsplit(" for ", 1)[0].removeprefix("impl")
    if head.startswith("<"):
        depth = 0
        for index, char in enumerate(head):
            depth += {"<": 1, ">": -1}.get(char, 0)
            if depth == 0:
                head = head[index + 1 :]
                break
    return head.strip()


def _item_text(item: ItemOut) -> str:
    lines = [f"{item.kind} {item.path} ({item.crate} {item.version}) {item.url}"]
    if item.matched != "exact" and item.requested and item.requested != item.path:
        lines.append(f"(You asked for {item.requested!r}: {_MATCH_NOTES.get(item.matched, item.matched)}.)")
    if item.deprecated:
        lines.append(f"DEPRECATED{': ' + item.deprecation_note if item.deprecation_note else ''}")
    if item.gate is not None:
        lines.append(item.gate.text)
    if item.signature:
        lines += ["", item.signature]
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    aliases = [a for a in metadata.get("aliases") or [] if isinstance(a, str)]
    impls = [t for t in metadata.get("trait_impls") or [] if isinstance(t, str) and t not in _COMPILER_MARKERS]
    if aliases or impls:
        lines.append("")
    if aliases:  # the paths code imports it by ('use serde_json::Value'), as docs.rs's re-exports show
        lines.append(f"Also public as: {', '.join(aliases)}")
    if item.implements:
        lines.append("Implements: " + ", ".join(dict.fromkeys(
            _implemented_trait(i.declaration) or i.trait
            for i in item.implements if not i.blanket and i.trait not in _COMPILER_MARKERS)))
    elif impls:
        lines.append(f"Implements: {', '.join(impls)}")
    if item.implementors:
        lines.append(f"Implemented by ({len(item.implementors)}): "
                     + ", ".join(dict.fromkeys(i.type for i in item.implementors[:60])))
    if item.docs:
        docs = item.docs
        if len(docs) > ITEM_TEXT_DOCS_LIMIT:
            rest = len(docs) - ITEM_TEXT_DOCS_LIMIT
            where = f" and at {item.url}" if item.url else ""
            note = f"[… {rest:,} more characters: the full docs are in the structured content{where}]"
            docs = f"{docs[:ITEM_TEXT_DOCS_LIMIT]}\n{note}"
        lines += ["", docs]
    if item.children:
        lines += ["", f"{len(item.children)} child item(s):"]
        lines += [f"- {c.kind} {c.path}{': ' + c.summary if c.summary else ''}" for c in item.children[:50]]
        if len(item.children) > 50:
            lines.append(f"… and {len(item.children) - 50} more (every child is in the structured content)")
    return "\n".join(lines)


READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
TOOLS = [
    (add_rust_crate, WRITE),
    (add_rust_crates_from_lockfile, WRITE),
    (check_rust_status, READ_ONLY),
    (list_rust_crates, READ_ONLY),
    (remove_rust_crate, ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)),
    (restore_rust_crate, ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)),
    (cancel_rust_job, ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)),
    (search_rust_docs, READ_ONLY),
    (get_rust_item, READ_ONLY),
    (list_rust_implementations, READ_ONLY),
]


class _Server(MCPServer):
    """Arguments that do not fit a tool's input schema are refused in the words of the API's 422, not with
    pydantic's report ('1 validation error for search_rust_docsArguments ... errors.pydantic.dev')."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            raise ToolError(argument_error_message(cause)) from cause


def argument_error_message(error: ValidationError) -> str:
    """'Invalid arguments: limit: Input should be less than or equal to 50; ...', as the API's 422 summary."""
    parts = []
    for err in error.errors(include_url=False):
        field = ".".join(str(part) for part in err.get("loc", ())) or "arguments"
        parts.append(f"{field}: {err.get('msg', 'invalid value')}")
    return "Invalid arguments: " + ("; ".join(parts[:5]) or "the arguments are not valid")


def build_server() -> MCPServer:
    server = _Server(SERVER_NAME, title="Ferrodex: Rust crate docs", instructions=INSTRUCTIONS, version="0.1.0")
    for fn, hints in TOOLS:
        server.add_tool(fn, description=inspect.cleandoc(fn.__doc__ or ""), annotations=hints)
    return server
