"""A fake docs.rs + crates.io (sparse index and API) on top of pytest-httpserver, for any test that ingests.

Routes and status codes follow the real services (and ``/work/shared/tools/docsrs_replica.py``):

- ``/index/<sparse path>``: one JSON line per version (``name``, ``vers``, ``yanked``...), 404 for unknown crates.
- ``/api/v1/crates/{name}``: crates.io crate JSON (403 without a User-Agent, 404 for unknown crates).
- ``/crate/{name}/{version}/json``: the bytes given as ``json_bytes``, served as they are (zstd/gzip/plain), with
  an ETag; ``If-None-Match`` -> 304; 404 when the release has no JSON.
- ``/crate/{name}/{version}/status.json``: ``{"version": ..., "doc_status": bool}``.
- ``/crate/{name}/{version}/download``: ``zip_bytes`` (application/zip), ETag, 404 when absent.
- ``/{name}/{version}/{path}``: the HTML ``pages`` (keyed ``lib/index.html``...); ``/{name}/{version}/`` 302s
  to the library's root.
- A non-canonical crate spelling in a docs.rs route is answered with 302 to the canonical one, as docs.rs does.

Usage::

    def test_x(fake_docsrs):                    # fixture from tests/conftest.py; settings already point here
        fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=zstd(raw_json))
        fake_docsrs.fail("/crate/ferro-fixture/0.3.1/json", status=429, times=1, headers={"Retry-After": "1"})
        ...
        assert fake_docsrs.docsrs_requests() == []

``fake.env()`` gives the same configuration as environment variables, for worker subprocesses.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import zstandard
from werkzeug import Request, Response

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_CRATE = FIXTURES / "crates" / "ferro_fixture"

Handler = Callable[[Request], Response]


# -- body helpers ----------------------------------------------------------------------------------------------


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def make_zip(
    files: Mapping[str, bytes],
    *,
    symlinks: Mapping[str, str] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A ZIP with ``files`` (names used verbatim, so tests can build hostile archives) and optional symlinks."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, body in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), body)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = (0o120777 << 16) & 0xFFFF0000
            archive.writestr(info, target)
    return buffer.getvalue()


def zip_directory(root: Path) -> bytes:
    """The files below ``root`` as a ZIP with paths relative to it (what docs.rs' download serves)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


# -- real rustdoc output of the fixture crate ------------------------------------------------------------------


@cache
def ferro_fixture_json() -> bytes:
    """Plain rustdoc JSON of ``tests/fixtures/crates/ferro_fixture``: the committed fixture, else built now."""
    committed = FIXTURES / "rustdoc" / "ferro_fixture.json.zst"
    if committed.exists():
        return zstandard.ZstdDecompressor().decompressobj().decompress(committed.read_bytes())
    with tempfile.TemporaryDirectory(prefix="ferro-json-") as tmp:
        crate = _copy_fixture_crate(Path(tmp))
        _cargo(
            ["rustdoc", "--offline", "--lib", "-q", "--", "-Z", "unstable-options", "--output-format", "json"],
            cwd=crate,
            env_extra={"RUSTC_BOOTSTRAP": "1"},
        )
        return (crate / "target" / "doc" / "ferro_fixture.json").read_bytes()


def gated_fixture_json(*, default_features: bool = False) -> bytes:
    """rustdoc JSON of ``tests/fixtures/crates/gated_fixture``: docs.rs-style (all features, ``--cfg docsrs``), or
    built with its default features only (see tests/fixtures/rustdoc/README.md)."""
    name = "gated_fixture-default.json.zst" if default_features else "gated_fixture.json.zst"
    return zstandard.ZstdDecompressor().decompressobj().decompress((FIXTURES / "rustdoc" / name).read_bytes())


GATED_FIXTURE_FEATURES = {"default": ["std"], "std": [], "net": [], "fs": ["std"], "full": ["net", "fs"]}


@cache
def ferro_fixture_doc_zip() -> bytes:
    """The fixture crate's ``cargo doc`` tree as docs.rs' download ZIP: the committed fixture, else built now."""
    committed = FIXTURES / "html" / "ferro_fixture-0.3.1.zip"
    if committed.exists():
        return committed.read_bytes()
    return zip_directory(ferro_fixture_doc_dir())


@cache
def ferro_fixture_doc_dir() -> Path:
    """A ``target/doc`` directory of the fixture crate, built once per test process (kept in a temp dir)."""
    tmp = Path(tempfile.mkdtemp(prefix="ferro-html-"))
    crate = _copy_fixture_crate(tmp)
    _cargo(["doc", "--offline", "--no-deps", "--lib", "-q"], cwd=crate)
    return crate / "target" / "doc"


def _copy_fixture_crate(tmp: Path) -> Path:
    crate = tmp / "ferro_fixture"
    shutil.copytree(FIXTURE_CRATE, crate, ignore=shutil.ignore_patterns("target"))
    return crate


def _cargo(args: list[str], *, cwd: Path, env_extra: Mapping[str, str] | None = None) -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not installed and the rustdoc fixtures are not committed")
    env = {**os.environ, **(env_extra or {})}
    subprocess.run([cargo, *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=600)


# -- the fake server -------------------------------------------------------------------------------------------


@dataclass
class FakeRelease:
    version: str
    yanked: bool = False
    json_bytes: bytes | None = None
    zip_bytes: bytes | None = None
    pages: dict[str, bytes] | None = None
    doc_status: bool | None = None  # None: True when the release has JSON, a ZIP or pages

    @property
    def has_docs(self) -> bool:
        if self.doc_status is not None:
            return self.doc_status
        return bool(self.json_bytes or self.zip_bytes or self.pages)


@dataclass
class FakeCrate:
    name: str  # as published: the canonical spelling
    lib_name: str
    description: str = ""
    repository: str = ""
    api: bool = True  # False: the crates.io API answers 404 for it
    releases: dict[str, FakeRelease] = field(default_factory=dict)
    features: dict[str, list[str]] = field(default_factory=dict)  # [features], the same for every version


@dataclass(frozen=True)
class RecordedRequest:
    at: float  # time.time() when the fake started handling it
    method: str
    path: str
    query: str
    status: int
    headers: dict[str, str]

    @property
    def service(self) -> str:
        if self.path.startswith("/index/"):
            return "index"
        if self.path.startswith("/api/"):
            return "api"
        return "docsrs"


@dataclass
class _Fault:
    pattern: re.Pattern[str]
    status: int
    remaining: int | None  # None: forever
    headers: dict[str, str]
    body: bytes


def sparse_index_path(name: str) -> str:
    """Written independently of crates.pipeline.resolve, so the fake checks the client's paths."""
    lower = name.lower()
    shapes = {1: f"1/{lower}", 2: f"2/{lower}", 3: f"3/{lower[:1]}/{lower}"}
    return shapes.get(len(lower), f"{lower[0:2]}/{lower[2:4]}/{lower}")


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class FakeDocsRs:
    """docs.rs + crates.io in one pytest-httpserver. Every request is recorded in ``requests``."""

    def __init__(self, httpserver) -> None:
        self.httpserver = httpserver
        self.crates: dict[str, FakeCrate] = {}
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        httpserver.expect_request(re.compile(r"^/.*")).respond_with_handler(self._dispatch)

    # -- configuration ------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.httpserver.url_for("/").rstrip("/")

    @property
    def index_url(self) -> str:
        return f"{self.base_url}/index"

    @property
    def api_url(self) -> str:
        return self.base_url

    def configure(self, settings) -> None:
        """Point Django settings (pytest-django's ``settings`` fixture) here; no rate limit, fast retries."""
        for key, value in self.settings_overrides().items():
            setattr(settings, key, value)

    def settings_overrides(self) -> dict[str, object]:
        return {
            "DOCSRS_BASE_URL": self.base_url,
            "CRATES_INDEX_URL": self.index_url,
            "CRATES_API_URL": self.api_url,
            "RATE_LIMIT_RPS": 0.0,
            "HTTP_BACKOFF_BASE": 0.01,
            "HTTP_BACKOFF_MAX": 2.0,
            "HTTP_TIMEOUT": 10.0,
        }

    def env(self) -> dict[str, str]:
        """The same configuration as environment variables, for subprocesses (workers, manage.py)."""
        return {key: str(value) for key, value in self.settings_overrides().items()}

    def add_crate(
        self,
        name: str,
        versions: Iterable[str] = ("0.1.0",),
        *,
        yanked: Iterable[str] = (),
        json_bytes: bytes | None = None,
        zip_bytes: bytes | None = None,
        pages: Mapping[str, bytes] | None = None,
        doc_status: bool | None = None,
        description: str = "",
        repository: str = "",
        lib_name: str | None = None,
        api: bool = True,
        features: Mapping[str, list[str]] | None = None,
    ) -> FakeCrate:
        """Publish ``name`` (spelling as given) with ``versions``; the docs given apply to every version
        (override one with ``set_release``). Yanked versions listed in ``yanked`` are added if missing."""
        crate = FakeCrate(
            name=name,
            lib_name=lib_name or name.replace("-", "_"),
            description=description,
            repository=repository,
            api=api,
            features=dict(features or {}),
        )
        yanked = list(yanked)
        for version in [*versions, *[v for v in yanked if v not in versions]]:
            crate.releases[version] = FakeRelease(
                version=version,
                yanked=version in yanked,
                json_bytes=json_bytes,
                zip_bytes=zip_bytes,
                pages=dict(pages) if pages is not None else None,
                doc_status=doc_status,
            )
        self.crates[_key(name)] = crate
        return crate

    def set_release(self, name: str, version: str, **fields: object) -> FakeRelease:
        release = self.crates[_key(name)].releases.setdefault(version, FakeRelease(version=version))
        for attr, value in fields.items():
            setattr(release, attr, value)
        return release

    def fail(
        self,
        path: str | re.Pattern[str],
        *,
        status: int = 503,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        """Answer the next ``times`` requests whose path starts with ``path`` (or matches the regex) with
        ``status`` (``times=None``: forever). Faults are checked before any route; the first match wins."""
        pattern = path if isinstance(path, re.Pattern) else re.compile(re.escape(path))
        default_body = f"injected HTTP {status}\n".encode()
        self._faults.append(_Fault(pattern, status, times, dict(headers or {}), body or default_body))

    def add_route(self, path: str, handler: Handler) -> None:
        """Serve ``path`` (exact) with a werkzeug handler, e.g. a chunked body without Content-Length."""
        self._routes[path] = handler

    # -- what the fake saw -----------------------------------------------------------------------------------
    def paths(self, service: str | None = None) -> list[str]:
        return [r.path for r in self.requests if service is None or r.service == service]

    def docsrs_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.service == "docsrs"]

    def count(self, path: str | None = None, *, service: str | None = None) -> int:
        return sum(
            1 for r in self.requests if (path is None or r.path == path) and (service is None or r.service == service)
        )

    def max_in_window(self, seconds: float = 1.0, *, requests: list[RecordedRequest] | None = None) -> int:
        """Most requests that arrived within any half-open window [t, t + seconds)."""
        times = sorted(r.at for r in (self.requests if requests is None else requests))
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- serving ---------------------------------------------------------------------------------------------
    def _dispatch(self, request: Request) -> Response:
        at = time.time()
        response = self._fault_response(request.path) or self._route(request)
        headers = {key: value for key, value in request.headers.items()}
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    at=at,
                    method=request.method,
                    path=request.path,
                    query=request.query_string.decode(),
                    status=response.status_code,
                    headers=headers,
                )
            )
        return response

    def _fault_response(self, path: str) -> Response | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining != 0 and fault.pattern.match(path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return Response(fault.body, status=fault.status, headers=fault.headers)
        return None

    def _route(self, request: Request) -> Response:
        path = request.path
        if path in self._routes:
            return self._routes[path](request)
        if path.startswith("/index/"):
            return self._index(path.removeprefix("/index/"))
        if path.startswith("/api/v1/crates/"):
            return self._api(request, path.removeprefix("/api/v1/crates/").strip("/"))
        parts = path.strip("/").split("/")
        if parts[0] == "crate" and len(parts) == 4:
            return self._crate_route(request, parts[1], parts[2], parts[3], path)
        if len(parts) >= 2 and parts[0] != "crate":
            rest = path[len(f"/{parts[0]}/{parts[1]}") :].lstrip("/")
            return self._html(request, parts[0], parts[1], rest, path)
        return _text(404, "not found")

    def _index(self, index_path: str) -> Response:
        name = index_path.rsplit("/", 1)[-1]
        crate = self.crates.get(_key(name))
        # The index is keyed by the lower-cased name exactly as published ('-' and '_' are not interchangeable).
        if crate is None or crate.name.lower() != name or sparse_index_path(crate.name) != index_path:
            return _text(404, "not found")
        lines = [
            json.dumps(
                {
                    "name": crate.name,
                    "vers": release.version,
                    "deps": [],
                    "cksum": hashlib.sha256(f"{crate.name}-{release.version}".encode()).hexdigest(),
                    # As crates.io writes them: entries with the newer syntax (dep:, ?/) go to features2.
                    "features": {k: v for k, v in crate.features.items() if not _new_syntax(v)},
                    "features2": {k: v for k, v in crate.features.items() if _new_syntax(v)},
                    "yanked": release.yanked,
                    "links": None,
                    "v": 2,
                }
            )
            for release in crate.releases.values()
        ]
        return Response("\n".join(lines) + "\n", status=200, content_type="text/plain; charset=utf-8")

    def _api(self, request: Request, name: str) -> Response:
        if not request.headers.get("User-Agent", "").strip():
            return _text(403, "We require that all requests include a `User-Agent` header.")
        crate = self.crates.get(_key(name))
        if crate is None or not crate.api:
            return _json(404, {"errors": [{"detail": f"crate `{name}` does not exist"}]})
        stable = [r.version for r in crate.releases.values() if not r.yanked]
        payload = {
            "crate": {
                "id": crate.name,
                "name": crate.name,
                "description": crate.description,
                "repository": crate.repository or None,
                "max_version": stable[-1] if stable else None,
            },
            "versions": [{"num": r.version, "yanked": r.yanked, "crate": crate.name} for r in crate.releases.values()],
        }
        return _json(200, payload)

    def _crate_route(self, request: Request, name: str, version: str, what: str, path: str) -> Response:
        crate = self.crates.get(_key(name))
        if crate is None:
            return _text(404, f"crate `{name}` not found")
        if crate.name != name:
            return Response(status=302, headers={"Location": path.replace(f"/{name}/", f"/{crate.name}/", 1)})
        release = crate.releases.get(version)
        if release is None:
            return _text(404, f"no release of `{name}` matches `{version}`")
        if what == "status.json":
            return _json(200, {"version": version, "doc_status": release.has_docs})
        if what == "json":
            return _file(request, release.json_bytes, _json_content_type(release.json_bytes or b""))
        if what == "download":
            return _file(request, release.zip_bytes, "application/zip")
        return _text(404, "not found")

    def _html(self, request: Request, name: str, version: str, rest: str, path: str) -> Response:
        crate = self.crates.get(_key(name))
        if crate is None:
            return _text(404, f"crate `{name}` not found")
        if crate.name != name:
            return Response(status=302, headers={"Location": path.replace(f"/{name}/", f"/{crate.name}/", 1)})
        release = crate.releases.get(version)
        if release is None or not release.pages:
            return _text(404, "no docs for this release")
        if rest == "":
            return Response(status=302, headers={"Location": f"/{crate.name}/{version}/{crate.lib_name}/"})
        if rest.endswith("/"):
            rest += "index.html"
        body = release.pages.get(rest)
        if body is None and f"{rest}/index.html" in release.pages:
            return Response(status=302, headers={"Location": f"{path}/"})
        return _file(request, body, "text/html; charset=utf-8")


def _new_syntax(enables: list[str]) -> bool:
    return any("dep:" in e or "?/" in e for e in enables)


def _json_content_type(body: bytes) -> str:
    # docs.rs labels the compressed file itself; there is no Content-Encoding.
    if body.startswith(b"\x28\xb5\x2f\xfd"):
        return "application/zstd"
    if body.startswith(b"\x1f\x8b"):
        return "application/gzip"
    return "application/json"


def _text(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _json(status: int, payload: object) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _file(request: Request, body: bytes | None, content_type: str) -> Response:
    if body is None:
        return _text(404, "not found")
    etag = _etag(body)
    if request.headers.get("If-None-Match") == etag:
        return Response(status=304, headers={"ETag": etag})
    return Response(body, status=200, content_type=content_type, headers={"ETag": etag})
