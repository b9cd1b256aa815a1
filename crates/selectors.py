"""Reads on crates: hybrid search, item lookup, crate listing.

Search internals (query parsing, the three signals, fusion) live in ``crates.search``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import BooleanField, OuterRef, Q, Subquery
from django.db.models.expressions import RawSQL

from crates import trait_graph
from crates.errors import InvalidInput, ItemNotFound
from crates.gates import annotate_hits, features_summary, release_features
from crates.gates import describe as describe_gate
from crates.models import Crate, CrateRelease, Document
from crates.names import TOOLCHAIN_CRATES, normalize_crate_name, optional_version, semver_key, validate_crate_name
from crates.projects import project_release, validate_project_name
from crates.search.engine import SIGNALS, SearchHit, search
from crates.search.hints import missing_crate_hint, missing_crates
from crates.search.scope import ReleaseInfo, find_crate, release_for
from crates.textsearch import clean_query

__all__ = [
    "ItemDetail",
    "Page",
    "SearchHit",
    "get_crate",
    "get_item",
    "list_crates",
    "search_docs",
    "search_notice",
]

MAX_PAGE_SIZE = 100
MAX_SUGGESTIONS = 5
_CHILD_SUMMARY_CHARS = 200


@dataclass(slots=True)
class ItemDetail:
    crate: str
    version: str
    path: str
    kind: str
    signature: str
    docs: str
    url: str
    deprecated: bool
    deprecation_note: str
    parent_path: str
    children: list[dict] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    gate: dict | None = None  # feature/platform gate (crates.gates.describe)
    # How the path asked for found this item (MATCH_*): anything but "exact" names another spelling.
    matched: str = "exact"
    requested: str = ""
    implementors: list[dict] | None = None  # a trait's impls in the crate (crates.trait_graph)
    implements: list[dict] | None = None  # a type's trait impls, with generics and bounds


@dataclass(slots=True)
class Page:
    items: list[dict]
    page: int
    page_size: int
    total: int
    pages: int


# --- search ---------------------------------------------------------------------------------


def search_docs(
    *,
    query: str,
    crate: str | None = None,
    version: str | None = None,
    kinds: list[str] | None = None,
    limit: int = 10,
    signals: tuple[str, ...] = SIGNALS,
    project: str | None = None,
) -> list[SearchHit]:
    """Hybrid search (vector + keyword + path, and type for a type query, fused by weighted RRF), one hit per item.

    Only active releases of crates that are not soft-deleted; ``version=None`` means the
    newest active release of each crate. Any query text gives hits or ``[]``. An unknown
    ``crate``/``version`` raises CrateNotFound/VersionNotFound and an unknown kind
    InvalidInput, so a typo is not mistaken for "no results". ``project``: only the versions its
    Cargo.lock locks, and each hit's feature gate says whether the project enables what it needs.
    """
    project = validate_project_name(project) if project else None
    hits = search(query=query, crate=crate, version=version, kinds=kinds, limit=limit, signals=signals,
                  project=project)  # fmt: skip
    return annotate_hits(hits, project=project)


def search_notice(*, query: str, crate: str | None = None) -> dict[str, Any]:
    """What a search answer says beside its hits: the crates the query names that are not indexed
    (``missing_crates``) and one sentence on how to add them (``notice``, "" when nothing is missing)."""
    missing = missing_crates(query=clean_query(query), crate=crate)
    return {"missing_crates": missing, "notice": missing_crate_hint(missing)}


# --- items ----------------------------------------------------------------------------------

# When one path has several kinds (serde::Serialize is a trait and a derive macro),
# the item people mean is the type/trait/function.
_KIND_PREFERENCE = ["struct", "enum", "trait", "union", "type_alias", "trait_alias", "function", "module",
                    "method", "constant", "static", "assoc_type", "assoc_const", "variant", "field", "macro",
                    "primitive", "keyword"]  # fmt: skip


def _kind_rank(kind: str) -> int:
    return _KIND_PREFERENCE.index(kind) if kind in _KIND_PREFERENCE else len(_KIND_PREFERENCE)


_GENERIC_ARGS = re.compile(r"<[^<>]*>")
# What agents copy around a path from docs and code: rustdoc's disambiguator ('struct@', 'mod@'), or the
# declaration's keywords ('pub fn spawn', 'struct Mutex'). Only keywords: 'Mutex lock' still means Mutex::lock.
_PATH_PREFIX = re.compile(
    r"^(?:\w+@|macro_rules!\s*|(?:(?:pub(?:\([^)]*\))?|unsafe|async|const|extern|struct|enum|union|trait|fn|type|mod|static|macro)\s+)+)"
)


def _clean_item_path(path: object) -> str:
    text = clean_query(path).strip().strip("`").strip()  # a code span: `tokio::sync::Mutex`
    text = _PATH_PREFIX.sub("", text)
    # Paths are stored without generic arguments; agents copy them from code ('Mutex<T>', 'Vec::<u8>::new').
    for _ in range(8):  # nested ones go innermost first; a bound keeps hostile input cheap
        text, stripped = _GENERIC_ARGS.subn("", text)
        if not stripped:
            break
    text = re.sub(r"\(.*\)$", "", text).strip().rstrip("!").strip()
    text = re.sub(r"\s*\.\s*", "::", text)  # a method call: "Mutex.lock()"
    text = re.sub(r"::(?:\s*::)+", "::", text)
    text = re.sub(r"\s*::\s*", "::", text)
    return re.sub(r"\s+", "::", text.strip(":"))  # "Mutex lock" -> "Mutex::lock"


def _with_library_name(path: str, *, crate: str) -> str:
    """``qa-tiny::Widget`` -> ``qa_tiny::Widget``: stored paths start with the library name, where the
    crate name's ``-`` is ``_``, and users type the crate's name. ``crate::x::Y`` is looked up as ``x::Y``."""
    head, sep, rest = path.partition("::")
    if head == "crate":  # an intra-doc path as the crate's own docs write it: crate::sync::Mutex
        return rest or crate.replace("-", "_")
    if "-" in head and head.replace("-", "_").lower() == crate.replace("-", "_").lower():
        return head.replace("-", "_") + sep + rest
    return path


def _aliases(doc: Document) -> list[str]:
    aliases = doc.metadata.get("aliases") if isinstance(doc.metadata, dict) else None
    return [a for a in aliases if isinstance(a, str)] if isinstance(aliases, list) else []


def _other_indexed_crate(head: str, *, release: ReleaseInfo) -> str | None:
    """The name of the indexed crate a path's first segment names, when it is not the crate asked."""
    key = normalize_crate_name(head)
    if not key or key == normalize_crate_name(release.crate_name):
        return None
    return Crate.objects.alive().filter(normalized_name=key[:64]).values_list("name", flat=True).first()


# How get_item found an item, weakest last: only an exact path (or alias) may win over other candidates;
# a suffix or a match ignoring case answers only when it has no rival (see _resolve_document).
MATCH_EXACT, MATCH_ALIAS, MATCH_SUFFIX, MATCH_CASE = "exact", "alias", "suffix", "case_insensitive"


def _names(doc: Document) -> list[str]:
    return [doc.path, *_aliases(doc)]


def _classify(docs: list[Document], *, path: str, library: str) -> dict[str, list[Document]]:
    """The candidates by how they meet ``path``: its exact spelling (from the crate root too), an alias
    spelled as typed, a tail with the typed case, or only ignoring case."""
    relative = f"{library}::{path}"
    lowered, suffix = path.lower(), f"::{path}"
    found: dict[str, list[Document]] = {MATCH_EXACT: [], MATCH_ALIAS: [], MATCH_SUFFIX: [], MATCH_CASE: []}
    for doc in docs:
        aliases = _aliases(doc)
        if doc.path in (path, relative):
            found[MATCH_EXACT].append(doc)
        elif path in aliases or relative in aliases:
            found[MATCH_ALIAS].append(doc)
        elif any(name.endswith(suffix) for name in _names(doc)):
            found[MATCH_SUFFIX].append(doc)
        elif any(name.lower() == lowered or name.lower().endswith(f"::{lowered}") for name in _names(doc)):
            found[MATCH_CASE].append(doc)
    return found


def _ambiguous(*, release: ReleaseInfo, path: str, docs: list[Document], how: str) -> ItemNotFound:
    candidates = sorted({d.path for d in docs}, key=lambda p: (p.count("::"), len(p), p))
    shown = candidates[:10]
    return ItemNotFound(
        f"{path!r} matches {len(candidates)} items{how} in {release.crate_name} {release.version}; "
        f"use the full path: {', '.join(shown)}" + (" …" if len(candidates) > len(shown) else ""),
        crate=release.crate_name,
        version=release.version,
        path=path,
        suggestions=shown,
        ambiguous=True,
    )


def _resolve_document(*, release: ReleaseInfo, path: str) -> tuple[Document, str]:
    """The document ``path`` names and how it matched (MATCH_*).

    An exact path wins, case-sensitively (``clap::Parser`` over the module ``clap::parser``); then an alias
    spelled as typed. A suffix with the typed case, and after it a match ignoring case, answer only when
    they have a single candidate, else ItemNotFound lists them: ``Regex::captures`` in regex must not
    answer ``regex::Captures``, the struct that path equals but for case.
    """
    docs = Document.objects.filter(release_id=release.id)
    # Every path, alias and segment-boundary tail ignoring case: the full path is a tail too.
    tail_sql = 'ferrodex_path_tails("crates_document"."path", "crates_document"."metadata") @> ARRAY[%s]::text[]'
    tails = list(
        docs.alias(tail_hit=RawSQL(tail_sql, [path.lower()], output_field=BooleanField())).filter(tail_hit=True)
    )
    found = _classify(tails, path=path, library=release.crate_name.replace("-", "_"))
    for how in (MATCH_EXACT, MATCH_ALIAS):
        if found[how]:
            return _preferred(found[how]), how
    if parent := _through_reexported_parent(release=release, path=path, same_case=True):
        return _preferred(parent), MATCH_ALIAS
    for how, note in ((MATCH_SUFFIX, ""), (MATCH_CASE, " ignoring case")):
        matches = found[how] or (_through_reexported_parent(release=release, path=path) if how == MATCH_CASE else [])
        if len({d.path for d in matches}) == 1:
            return _preferred(matches), how
        if matches:
            raise _ambiguous(release=release, path=path, docs=matches, how=note)
    if foreign := _foreign_reexport(release=release, path=path):
        full, origin = foreign
        home = origin.split("::", 1)[0]
        if home in TOOLCHAIN_CRATES:
            where = f"the standard library documents it: https://doc.rust-lang.org/{home}/"
        else:
            where = f"ask for it with crate {home!r} and path {origin!r}" + (
                "" if _other_indexed_crate(home, release=release) else f" (add {home!r} first)"
            )
        raise ItemNotFound(
            f"{full} is a re-export of {origin} (`pub use {origin};`), without a page of its own in "
            f"{release.crate_name}: {where}.",
            crate=release.crate_name,
            version=release.version,
            path=path[:200],
            reexport_of=origin,
            suggestions=[],
        )
    suggestions = _close_paths(release=release, path=path)
    hint = (
        f" Did you mean: {', '.join(suggestions)}?"
        if suggestions
        else " Search for it (search_rust_docs over MCP, GET /api/v1/search)."
    )
    if other := _other_indexed_crate(path.split("::", 1)[0], release=release):
        hint = f" The path starts with {other!r}, another indexed crate: ask for it with crate {other!r}." + hint
    raise ItemNotFound(
        f"No item {path[:200]!r} in {release.crate_name} {release.version}.{hint}",
        crate=release.crate_name,
        version=release.version,
        path=path[:200],
        suggestions=suggestions,
    )


def _preferred(docs: list[Document]) -> Document:
    """Of the documents of one path (serde::Serialize: a trait and a derive macro), the one people mean."""
    return min(docs, key=lambda d: (_kind_rank(d.kind), d.pk))


def _foreign_reexport(*, release: ReleaseInfo, path: str) -> tuple[str, str] | None:
    """(full path, origin) when a module lists ``path`` as a ``pub use`` of another crate's item without a page
    (``#[doc(no_inline)]``): the parsers keep those in the module's ``metadata["reexports"]``."""
    name = path.rsplit("::", 1)[-1]
    modules = Document.objects.filter(release_id=release.id, kind="module", metadata__has_key="reexports")
    for module_path, reexports in modules.values_list("path", "metadata__reexports"):
        full = f"{module_path}::{name}"
        if isinstance(reexports, dict) and name in reexports and (full == path or full.endswith(f"::{path}")):
            return full, str(reexports[name])
    return None


def _through_reexported_parent(*, release: ReleaseInfo, path: str, same_case: bool = False) -> list[Document]:
    """``serde_json::Map::with_capacity`` -> ``serde_json::map::Map::with_capacity``.

    Methods are stored under their type's canonical path only; when the typed parent is an
    alias of a type, look the last segment up under that type. ``same_case``: alias and name as typed.
    """
    parent, _, name = path.rpartition("::")
    if not parent or not name:
        return []
    docs = Document.objects.filter(release_id=release.id)
    tail_sql = 'ferrodex_path_tails("crates_document"."path", "crates_document"."metadata") @> ARRAY[%s]::text[]'
    parents = [
        d
        for d in docs.alias(hit=RawSQL(tail_sql, [parent.lower()], output_field=BooleanField())).filter(hit=True)
        if (parent in _aliases(d) if same_case else parent.lower() in {a.lower() for a in _aliases(d)})
    ]
    if len({p.path for p in parents}) != 1:
        return []
    children = docs.filter(parent_path=parents[0].path)
    return list(children.filter(name=name) if same_case else children.filter(name__iexact=name))


def _close_paths(*, release: ReleaseInfo, path: str) -> list[str]:
    """Paths of the release most like ``path``: by the last segment first, then the whole path."""
    rows = list(Document.objects.filter(release_id=release.id).values_list("path", "name"))
    if not rows:
        return []
    lowered = path.lower()
    last = lowered.rsplit("::", 1)[-1]
    by_name: dict[str, list[str]] = {}
    for item_path, name in rows:
        by_name.setdefault(name.lower(), []).append(item_path)
    found: list[str] = []
    for name in difflib.get_close_matches(last, list(by_name), n=MAX_SUGGESTIONS, cutoff=0.6):
        found.extend(sorted(by_name[name], key=lambda p: (p.count("::"), len(p))))
    lowered_paths = {p.lower(): p for p, _ in rows}
    for match in difflib.get_close_matches(lowered, list(lowered_paths), n=MAX_SUGGESTIONS, cutoff=0.6):
        found.append(lowered_paths[match])
    # Prefer the candidates sharing most of the typed path.
    ranked = sorted(dict.fromkeys(found), key=lambda p: -difflib.SequenceMatcher(None, lowered, p.lower()).ratio())
    return ranked[:MAX_SUGGESTIONS]


def _summary(docs: str) -> str:
    for paragraph in docs.strip().split("\n\n"):
        text = " ".join(paragraph.split())
        if text:
            return text if len(text) <= _CHILD_SUMMARY_CHARS else text[: _CHILD_SUMMARY_CHARS - 1].rstrip() + "…"
    return ""


def get_item(*, crate: str, path: str, version: str | None = None, project: str | None = None) -> ItemDetail:
    """One item's whole document by exact path, alias or unique path suffix, with its children.

    Never another item in the item's place: ``matched`` says how ``path`` was found (exact, alias,
    suffix, case_insensitive) and ``requested`` what was asked after cleaning.
    Raises CrateNotFound / VersionNotFound, or ItemNotFound whose ``context["suggestions"]``
    lists close paths (or, for an ambiguous suffix, the candidates). ``project``: at the version its
    Cargo.lock locks (crates.projects.project_release).
    """
    crate = validate_crate_name(crate, field="crate")
    package = None
    if project:
        release, package = project_release(
            project=validate_project_name(project), crate=crate, version=optional_version(version)
        )
    else:
        release = release_for(crate=crate, version=optional_version(version))
    cleaned = _clean_item_path(path)
    if not cleaned:
        raise ItemNotFound("An item path is required, e.g. 'tokio::sync::Mutex'.", suggestions=[])
    cleaned = _with_library_name(cleaned, crate=release.crate_name)
    doc, matched = _resolve_document(release=release, path=cleaned)
    children = (
        Document.objects.filter(release_id=release.id, parent_path=doc.path)
        .exclude(pk=doc.pk)
        .order_by("kind", "path")
        .values("path", "kind", "signature", "docs")
    )
    return ItemDetail(
        crate=release.crate_name,
        version=release.version,
        path=doc.path,
        kind=doc.kind,
        signature=doc.signature,
        docs=doc.docs,
        url=doc.url,
        deprecated=doc.deprecated,
        deprecation_note=doc.deprecation_note,
        parent_path=doc.parent_path,
        children=[
            {"path": c["path"], "kind": c["kind"], "signature": c["signature"], "summary": _summary(c["docs"])}
            for c in children
        ],
        metadata=doc.metadata if isinstance(doc.metadata, dict) else {},
        gate=describe_gate(
            cfg=(doc.metadata or {}).get("cfg") if isinstance(doc.metadata, dict) else None,
            crate=release.crate_name, version=release.version,
            features_table=release_features(crate=release.crate_name, version=release.version),
            package=package,
        ),
        matched=matched,
        requested=cleaned,
        **trait_graph.for_document(release_id=release.id, doc=doc),
    )


# --- crates ---------------------------------------------------------------------------------


def _latest_job_annotations() -> dict[str, Subquery]:
    from jobs.models import CrateJob

    latest = CrateJob.objects.filter(normalized_name=OuterRef("normalized_name")).order_by("-created_at")
    return {
        "latest_job_status": Subquery(latest.values("status")[:1]),
        "latest_job_id": Subquery(latest.values("id")[:1]),
    }


def _active_releases(crate_ids: list[int]) -> dict[int, list[CrateRelease]]:
    """Each crate's active (searchable) releases, newest SemVer first."""
    by_crate: dict[int, list[CrateRelease]] = {}
    for release in CrateRelease.objects.filter(crate_id__in=crate_ids, state=CrateRelease.State.ACTIVE):
        by_crate.setdefault(release.crate_id, []).append(release)
    for releases in by_crate.values():
        releases.sort(key=lambda r: semver_key(r.version), reverse=True)
    return by_crate


def _summary_dict(crate: Crate, active: list[CrateRelease]) -> dict[str, Any]:
    release = active[0] if active else None
    return {
        "name": crate.name,
        "description": crate.description,
        "repository": crate.repository,
        "latest_version": release.version if release else None,
        "versions": [r.version for r in active],
        "docs_source": release.docs_source if release else None,
        "documents": release.document_count if release else 0,
        "chunks": release.chunk_count if release else 0,
        "embeddings": release.embedding_count if release else 0,
        "last_updated": (release.ingested_at or release.created_at) if release else crate.updated_at,
        "deleted": crate.is_deleted,
        "latest_job_status": getattr(crate, "latest_job_status", None),
        "latest_job_id": getattr(crate, "latest_job_id", None),
        "features": features_summary(release.features) if release else None,
    }


def _positive(name: str, value: object, *, maximum: int | None = None) -> int:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a whole number.", field=name) from exc
    if number < 1:
        raise InvalidInput(f"{name} must be 1 or more.", field=name)
    return min(number, maximum) if maximum else number


def list_crates(
    *, search: str | None = None, include_deleted: bool = False, page: int = 1, page_size: int = 20
) -> Page:
    """Crates by name with their newest active release's counts and their latest job.

    ``search`` matches the name (either spelling of ``-``/``_``) or the description.
    A fixed number of queries whatever the page size (no N+1).
    """
    page = _positive("page", page)
    page_size = _positive("page_size", page_size, maximum=MAX_PAGE_SIZE)
    crates = Crate.objects.all() if include_deleted else Crate.objects.alive()
    term = clean_query(search) if search else ""
    if term:
        crates = crates.filter(
            Q(name__icontains=term)
            | Q(normalized_name__contains=term.lower().replace("-", "_"))
            | Q(description__icontains=term)
        )
    total = crates.count()
    start = (page - 1) * page_size
    rows = list(crates.order_by("normalized_name").annotate(**_latest_job_annotations())[start : start + page_size])
    active = _active_releases([c.pk for c in rows])
    return Page(
        items=[_summary_dict(c, active.get(c.pk, [])) for c in rows],
        page=page,
        page_size=page_size,
        total=total,
        pages=math.ceil(total / page_size) if total else 0,
    )


def _release_dict(release: CrateRelease) -> dict[str, Any]:
    return {
        "id": release.pk,
        "version": release.version,
        "state": release.state,
        "docs_source": release.docs_source,
        "format_version": release.format_version,
        "generator": release.generator,
        "source_notes": release.source_notes,
        "items": release.item_count,
        "documents": release.document_count,
        "chunks": release.chunk_count,
        "embeddings": release.embedding_count,
        "embedding_model": release.embedding_model,
        "job_id": release.job_id,
        "features": features_summary(release.features),
        "created_at": release.created_at,
        "ingested_at": release.ingested_at,
    }


def _job_dict(job) -> dict[str, Any]:
    try:
        from jobs.selectors import job_as_dict
    except ImportError:  # the jobs app's serialiser is optional here
        return {"id": job.pk, "status": job.status, "operation": job.operation, "created_at": job.created_at}
    return job_as_dict(job)


def get_crate(*, name: str, include_deleted: bool = True) -> dict[str, Any]:
    """One crate: its summary, every release (newest version first) and its latest job."""
    name = validate_crate_name(name)
    from jobs.models import CrateJob

    crate = find_crate(name=name, include_deleted=include_deleted)
    annotated = Crate.objects.filter(pk=crate.pk).annotate(**_latest_job_annotations()).get()
    releases = sorted(
        CrateRelease.objects.filter(crate=crate),
        key=lambda r: (semver_key(r.version), r.created_at),
        reverse=True,
    )
    active = [r for r in releases if r.state == CrateRelease.State.ACTIVE]  # already newest first
    job = CrateJob.objects.filter(normalized_name=crate.normalized_name).order_by("-created_at").first()
    return {
        **_summary_dict(annotated, active),
        "releases": [_release_dict(r) for r in releases],
        "latest_job": _job_dict(job) if job else None,
    }
