"""Stage 2: the HTTP client and fetching docs from a fake docs.rs, with real rustdoc output of the fixture crate."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import re
import socket
import struct
import time
import zipfile

import pytest
from werkzeug import Response

from crates.errors import (
    ArtifactTooLarge,
    CorruptArtifact,
    NoDocumentation,
    NotFound,
    RateLimited,
    UnsafeArchive,
    UpstreamRejected,
    UpstreamUnavailable,
)
from crates.models import FetchedArtifact
from crates.pipeline.archive import read_zip_pages
from crates.pipeline.fetch import decode_json_body, fetch_docs, load_cached_artifact, save_artifact
from crates.pipeline.http import HttpClient, parse_retry_after
from crates.pipeline.resolve import resolve_release
from crates.pipeline.types import NullProgress
from tests.fakes import FIXTURES, ferro_fixture_doc_zip, ferro_fixture_json, gzip_bytes, make_zip, zstd

NAME, VERSION = "ferro-fixture", "0.3.1"
CRATE = f"/crate/{NAME}/{VERSION}"
BIG = 1 << 40


@pytest.fixture
def client(fake_docsrs):
    with HttpClient(rps=0) as http:
        yield http


@pytest.fixture(scope="module")
def raw_json() -> bytes:
    return ferro_fixture_json()


@pytest.fixture(scope="module")
def doc_zip() -> bytes:
    return ferro_fixture_doc_zip()


def fetch(client, **kwargs):
    return fetch_docs(name=NAME, version=VERSION, client=client, progress=NullProgress(), **kwargs)


def crate_pages(doc_zip: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(doc_zip)) as archive:
        return {n: archive.read(n) for n in archive.namelist() if n.endswith(".html") and not n.startswith("src/")}


# -- JSON path ---------------------------------------------------------------------------------------------------


def test_json_path_zstd_real_fixture(fake_docsrs, client, raw_json):
    served = (FIXTURES / "rustdoc" / "ferro_fixture.json.zst").read_bytes()
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=served)

    artifact = fetch(client)

    assert artifact.kind == "json"
    assert artifact.body == raw_json
    assert json.loads(artifact.body)["crate_version"] == VERSION
    assert artifact.sha256 == hashlib.sha256(raw_json).hexdigest()
    assert artifact.etag.startswith('"') and not artifact.not_modified
    assert artifact.requests == 1
    assert fake_docsrs.paths() == [f"{CRATE}/json"]


def test_json_path_gzip_real_fixture(fake_docsrs, client):
    served = (FIXTURES / "rustdoc" / "ferro_fixture.json.gz").read_bytes()
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=served)

    artifact = fetch(client)

    assert artifact.kind == "json"
    assert artifact.body == gzip.decompress(served)
    assert json.loads(artifact.body)["format_version"] >= 45


def test_json_path_plain_json_body(fake_docsrs, client, raw_json):
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=raw_json)
    assert fetch(client).body == raw_json


def test_multi_frame_zstd_and_multi_member_gzip(raw_json):
    half = len(raw_json) // 2
    assert decode_json_body(zstd(raw_json[:half]) + zstd(raw_json[half:]), max_bytes=BIG) == raw_json
    assert decode_json_body(gzip_bytes(raw_json[:half]) + gzip_bytes(raw_json[half:]), max_bytes=BIG) == raw_json


def test_json_crate_costs_three_requests_including_resolution(fake_docsrs, client):
    served = (FIXTURES / "rustdoc" / "ferro_fixture.json.zst").read_bytes()
    fake_docsrs.add_crate(NAME, versions=["0.1.0", VERSION], json_bytes=served, description="fixture")

    release = resolve_release(name=NAME, version="latest", client=client)
    artifact = fetch_docs(name=release.name, version=release.version, client=client, progress=NullProgress())

    assert artifact.kind == "json"
    assert client.request_count == 3
    assert fake_docsrs.paths() == ["/index/fe/rr/ferro-fixture", f"/api/v1/crates/{NAME}", f"{CRATE}/json"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<!DOCTYPE html><html>oops</html>", "neither zstd, gzip nor a JSON object"),
        (b"[]\n", "neither zstd, gzip nor a JSON object"),
        (b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 20, "zstd stream"),
        (b"\x1f\x8b" + b"garbage" * 20, "gzip stream"),
    ],
)
def test_unusable_json_bodies_are_corrupt(fake_docsrs, client, body, message):
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=body)
    with pytest.raises(CorruptArtifact, match=message):
        fetch(client)


@pytest.mark.parametrize("compress", [zstd, gzip_bytes])
def test_truncated_compressed_json_is_corrupt(raw_json, compress):
    whole = compress(raw_json)
    with pytest.raises(CorruptArtifact, match="truncated"):
        decode_json_body(whole[: len(whole) - 20], max_bytes=BIG)


@pytest.mark.parametrize("compress", [zstd, gzip_bytes])
def test_decompression_bomb_is_refused(fake_docsrs, client, settings, compress):
    bomb = compress(b"{" + b" " * (64 * 1024 * 1024))  # 64 MiB of JSON whitespace
    assert len(bomb) < 200 * 1024
    settings.MAX_DECOMPRESSED_BYTES = 4 * 1024 * 1024
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=bomb)

    with pytest.raises(ArtifactTooLarge, match="inflates to more than 4,194,304 bytes"):
        fetch(client)


# -- ETag --------------------------------------------------------------------------------------------------------


def test_unchanged_release_costs_one_conditional_request(fake_docsrs, client, raw_json):
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=zstd(raw_json))
    first = fetch(client)
    fake_docsrs.reset_log()

    again = fetch(client, etag=first.etag)

    assert again.not_modified and again.kind == "json" and again.body == b""
    assert again.etag == first.etag and again.requests == 1
    (request,) = fake_docsrs.requests
    assert (request.status, request.headers.get("If-None-Match")) == (304, first.etag)


def test_changed_release_is_downloaded_again(fake_docsrs, client, raw_json):
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=zstd(raw_json))
    artifact = fetch(client, etag='"stale"')
    assert not artifact.not_modified and artifact.body == raw_json and artifact.etag != '"stale"'


# -- HTML paths --------------------------------------------------------------------------------------------------


def test_no_json_falls_back_to_the_download_zip(fake_docsrs, client, doc_zip):
    fake_docsrs.add_crate(NAME, versions=[VERSION], zip_bytes=doc_zip)

    artifact = fetch(client)

    assert artifact.kind == "zip"
    assert artifact.body == doc_zip and artifact.sha256 == hashlib.sha256(doc_zip).hexdigest()
    assert "ferro_fixture/index.html" in artifact.pages
    assert "ferro_fixture/struct.Counter.html" in artifact.pages
    assert all(path.endswith(".html") for path in artifact.pages)
    assert artifact.requests == 2
    assert fake_docsrs.paths() == [f"{CRATE}/json", f"{CRATE}/download"]


def test_html_only_crate_costs_four_requests_including_resolution(fake_docsrs, client, doc_zip):
    fake_docsrs.add_crate(NAME, versions=[VERSION], zip_bytes=doc_zip, description="fixture")

    release = resolve_release(name=NAME, version="latest", client=client)
    artifact = fetch_docs(name=release.name, version=release.version, client=client, progress=NullProgress())

    assert artifact.kind == "zip" and release.description == "fixture"
    assert client.request_count == 4


def test_unchanged_zip_release_answers_not_modified(fake_docsrs, client, doc_zip):
    fake_docsrs.add_crate(NAME, versions=[VERSION], zip_bytes=doc_zip)
    first = fetch(client)
    again = fetch(client, etag=first.etag)
    assert again.not_modified and again.kind == "zip" and again.requests == 2


def test_release_without_docs_fails_with_no_documentation(fake_docsrs, client):
    fake_docsrs.add_crate(NAME, versions=[VERSION], doc_status=False)

    with pytest.raises(NoDocumentation) as caught:
        fetch(client)

    assert str(caught.value) == (
        f"docs.rs has no documentation for {NAME} {VERSION}: its build failed or it was never built."
    )
    assert not caught.value.transient
    assert fake_docsrs.paths() == [f"{CRATE}/json", f"{CRATE}/download", f"{CRATE}/status.json"]


def test_docs_without_download_are_crawled_within_the_crate(fake_docsrs, client, doc_zip):
    pages = crate_pages(doc_zip)
    pages["other_crate/index.html"] = b"<html>not ours</html>"
    fake_docsrs.add_crate(NAME, versions=[VERSION], pages=pages)

    artifact = fetch(client)

    assert artifact.kind == "pages"
    assert artifact.url.endswith(f"/{NAME}/{VERSION}/ferro_fixture/index.html")
    assert "ferro_fixture/index.html" in artifact.pages
    assert "ferro_fixture/struct.Counter.html" in artifact.pages
    # Every page of the crate is reachable from its index (all.html lists every item), nothing outside it;
    # rustdoc's redirect stubs for private paths are linked from nowhere.
    stubs = {p for p, body in pages.items() if b'http-equiv="refresh"' in body}
    assert stubs, "the fixture has redirect stubs"
    assert set(artifact.pages) == {p for p in pages if p.startswith("ferro_fixture/")} - stubs
    crawled = [p for p in fake_docsrs.paths() if not p.startswith("/crate/")]
    assert not any("/src/" in p or "other_crate" in p for p in crawled)
    assert len(crawled) == len(set(crawled)), "no page is fetched twice"
    assert fake_docsrs.paths()[:3] == [f"{CRATE}/json", f"{CRATE}/download", f"{CRATE}/status.json"]
    assert artifact.requests == len(fake_docsrs.requests)


def test_crawl_stops_at_the_page_limit(fake_docsrs, client, doc_zip, settings):
    settings.HTML_CRAWL_PAGE_LIMIT = 3
    fake_docsrs.add_crate(NAME, versions=[VERSION], pages=crate_pages(doc_zip))

    artifact = fetch(client)

    assert len(artifact.pages) == 3
    assert fake_docsrs.count(service="docsrs") == 3 + 3


def test_crawl_finds_a_library_named_differently(fake_docsrs, client, doc_zip):
    pages = {p.replace("ferro_fixture/", "ferro/", 1): b for p, b in crate_pages(doc_zip).items()}
    fake_docsrs.add_crate(NAME, versions=[VERSION], pages=pages, lib_name="ferro")

    artifact = fetch(client)

    assert "ferro/index.html" in artifact.pages and "ferro/struct.Counter.html" in artifact.pages


def test_unsafe_download_zip_fails_the_fetch(fake_docsrs, client):
    fake_docsrs.add_crate(NAME, versions=[VERSION], zip_bytes=make_zip({"../../etc/cron.d/x.html": b"<html>"}))
    with pytest.raises(UnsafeArchive):
        fetch(client)


def test_oversize_download_is_refused_by_content_length(fake_docsrs, client, doc_zip, settings):
    settings.MAX_DOWNLOAD_BYTES = 10_000
    assert len(doc_zip) > 10_000
    fake_docsrs.add_crate(NAME, versions=[VERSION], zip_bytes=doc_zip)

    with pytest.raises(
        ArtifactTooLarge, match=f"larger than the limit of 10,000 bytes .{len(doc_zip):,} bytes announced"
    ):
        fetch(client)


def test_oversize_download_without_content_length_is_cut_while_streaming(fake_docsrs, client, settings):
    settings.MAX_DOWNLOAD_BYTES = 1_000_000

    def endless(_request):
        def body():
            for _ in range(64):  # 16 MiB if nobody stops reading
                yield b"x" * (256 * 1024)

        return Response(body(), status=200, content_type="application/zip", direct_passthrough=True)

    fake_docsrs.add_crate(NAME, versions=[VERSION])
    fake_docsrs.add_route(f"{CRATE}/json", endless)

    with pytest.raises(ArtifactTooLarge, match="limit of 1,000,000 bytes") as caught:
        fetch(client)
    assert "announced" not in str(caught.value)  # refused while streaming, not from a Content-Length


# -- retries -----------------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_then_succeeds(fake_docsrs, client, raw_json):
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=zstd(raw_json))
    fake_docsrs.fail(f"{CRATE}/json", status=429, times=1, headers={"Retry-After": "1"})

    artifact = fetch(client)

    assert artifact.body == raw_json and artifact.requests == 2
    first, second = fake_docsrs.requests
    assert (first.status, second.status) == (429, 200)
    # Backoff is 0.01 s in tests: only Retry-After explains a one-second wait.
    assert 0.95 <= second.at - first.at < 1.9


def test_a_retry_wait_is_announced_with_its_end_and_a_countdown(fake_docsrs, raw_json, settings):
    settings.HTTP_BACKOFF_MAX = 10.0
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=zstd(raw_json))
    fake_docsrs.fail(f"{CRATE}/json", status=429, times=1, headers={"Retry-After": "3"})
    notices: list[tuple[float, str | None]] = []

    with HttpClient(rps=0, on_wait=lambda text: notices.append((time.monotonic(), text))) as http:
        fetch(http)

    host = fake_docsrs.base_url.removeprefix("http://")
    texts = [text for _at, text in notices]
    assert texts[-1] is None  # the wait is over: the caller puts its own message back
    waiting = texts[:-1]
    assert [re.match(r"Retrying in (\d+) s ", text)[1] for text in waiting] == ["3", "2", "1"]
    shape = re.compile(
        rf"Retrying in \d s \(at \d\d:\d\d:\d\d UTC\) after HTTP 429 from {re.escape(host)} \(attempt 1 of \d+\)"
    )
    assert all(shape.fullmatch(text) for text in waiting), waiting
    assert len({re.search(r"at (\S+) UTC", text)[1] for text in waiting}) == 1  # the same instant each time
    # Refreshed once a second, not at every cancel check (the job writes what it is given).
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(notices[:-1])]
    assert all(0.8 <= gap <= 1.3 for gap in gaps), gaps


def test_retry_after_is_capped_at_the_backoff_maximum(fake_docsrs, client, raw_json, settings):
    settings.HTTP_BACKOFF_MAX = 0.3
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=zstd(raw_json))
    fake_docsrs.fail(f"{CRATE}/json", status=503, times=1, headers={"Retry-After": "3600"})

    with HttpClient(rps=0) as capped:
        fetch(capped)

    first, second = fake_docsrs.requests
    assert 0.25 <= second.at - first.at < 1.0


def test_503_storm_fails_with_a_clear_message_after_the_budget(fake_docsrs, settings, caplog):
    settings.HTTP_MAX_RETRIES = 2
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=b"{}")
    fake_docsrs.fail("/crate/", status=503, times=None)

    with HttpClient(rps=0) as http, pytest.raises(UpstreamUnavailable) as caught:
        fetch(http)

    error = caught.value
    host = fake_docsrs.base_url.removeprefix("http://")
    assert error.transient
    assert f"{host} answered HTTP 503 on all 3 attempts for {fake_docsrs.base_url}{CRATE}/json" in str(error)
    assert error.context == {"url": f"{fake_docsrs.base_url}{CRATE}/json", "host": host, "status": 503, "attempts": 3}
    assert fake_docsrs.count(f"{CRATE}/json") == 3
    retries = [r for r in caplog.records if r.levelname == "WARNING" and "HTTP 503" in r.getMessage()]
    assert [("attempt 1/3" in r.getMessage(), "attempt 2/3" in r.getMessage()) for r in retries] == [
        (True, False),
        (False, True),
    ]


def test_429_storm_fails_as_rate_limited(fake_docsrs, settings):
    settings.HTTP_MAX_RETRIES = 1
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=b"{}")
    fake_docsrs.fail("/crate/", status=429, times=None, headers={"Retry-After": "0"})

    with HttpClient(rps=0) as http, pytest.raises(RateLimited, match="HTTP 429 Too Many Requests on all 2 attempts"):
        fetch(http)
    assert RateLimited.transient


def test_connection_errors_are_retried_then_reported(settings):
    settings.HTTP_MAX_RETRIES = 2
    settings.HTTP_BACKOFF_BASE = 0.01
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    calls = []

    with HttpClient(rps=0, on_request=lambda: calls.append(1)) as http, pytest.raises(UpstreamUnavailable) as caught:
        http.get(f"http://127.0.0.1:{port}/crate/x/1.0.0/json")

    assert f"Could not reach 127.0.0.1:{port} after 3 attempts" in str(caught.value)
    assert len(calls) == 3 == http.request_count


def test_a_download_cut_off_before_its_end_is_reported_as_truncated_not_unreachable(settings):
    import threading

    settings.HTTP_MAX_RETRIES = 1
    settings.HTTP_BACKOFF_BASE = 0.01
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer_short() -> None:  # promises 100 kB, sends 10 bytes, hangs up; twice (one retry)
        for _ in range(2):
            conn, _addr = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")

    thread = threading.Thread(target=answer_short, daemon=True)
    thread.start()
    with server, HttpClient(rps=0) as http, pytest.raises(UpstreamUnavailable) as caught:
        http.get(f"http://127.0.0.1:{port}/crate/x/1.0.0/json")
    thread.join(timeout=5)
    message = str(caught.value)
    assert f"127.0.0.1:{port} cut the download off before its end on all 2 attempts" in message
    assert "truncated" in message and "Could not reach" not in message
    assert UpstreamUnavailable.transient and http.request_count == 2


class _SlowServer:
    """A raw socket server: ``headers_only`` sends nothing after the request; otherwise it promises 100 kB and
    trickles one byte every 50 ms (never idle for long, so only a whole-download limit can stop it), for at most
    ``seconds`` before it hangs up."""

    def __init__(self, *, headers_only: bool = False, seconds: float = 4.0) -> None:
        import threading

        self.headers_only = headers_only
        self.seconds = seconds
        self.accepted = 0
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/crate/x/1.0.0/json"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import time

        while not self.stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.recv(65536)
                if not self.headers_only:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                until = time.monotonic() + self.seconds
                while not self.stop.wait(0.05) and time.monotonic() < until:
                    if not self.headers_only:
                        try:
                            conn.sendall(b"x")
                        except OSError:
                            break

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def slow_server():
    servers = []

    def start(**kwargs) -> _SlowServer:
        servers.append(_SlowServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_body_trickling_in_is_cut_off_at_the_download_timeout(settings, slow_server):
    import time

    settings.HTTP_DOWNLOAD_TIMEOUT = 1.0
    settings.HTTP_TIMEOUT = 5.0  # never reached: a byte arrives every 50 ms
    settings.HTTP_MAX_RETRIES = 1
    settings.HTTP_BACKOFF_BASE = 0.01
    server = slow_server()

    started = time.monotonic()
    with HttpClient(rps=0) as http, pytest.raises(UpstreamUnavailable) as caught:
        http.get(server.url)

    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "too slowly" in message and "HTTP_DOWNLOAD_TIMEOUT" in message
    assert caught.value.transient
    assert http.request_count == 1 == server.accepted  # another try would take as long again: the job decides


@pytest.mark.parametrize(
    ("headers_only", "timeout"),
    [(False, 5.0), (True, 4.0)],  # a body trickling in; a server that accepted and stays silent
    ids=["trickling-body", "silent-server"],
)
def test_a_cancel_is_seen_while_the_server_is_slow(settings, slow_server, headers_only, timeout):
    import time

    from crates.errors import Cancelled

    settings.HTTP_TIMEOUT = timeout  # a cancel must not sit out the wait for the next bytes
    server = slow_server(headers_only=headers_only)
    cancel_at = time.monotonic() + 0.5

    def check_cancelled() -> None:
        if time.monotonic() > cancel_at:
            raise Cancelled("The job was cancelled.")

    with HttpClient(rps=0, check_cancelled=check_cancelled) as http, pytest.raises(Cancelled):
        http.get(server.url)

    assert time.monotonic() - cancel_at < 1.0
    assert server.accepted == 1


def test_a_server_that_never_answers_is_reported_as_silent_not_unreachable(settings, slow_server):
    settings.HTTP_TIMEOUT = 0.3
    settings.HTTP_MAX_RETRIES = 1
    settings.HTTP_BACKOFF_BASE = 0.01
    server = slow_server(headers_only=True)

    with HttpClient(rps=0) as http, pytest.raises(UpstreamUnavailable) as caught:
        http.get(server.url)

    message = str(caught.value)
    assert "accepted the connection but sent nothing for 0.3 s (HTTP_TIMEOUT) on all 2 attempts" in message
    assert "Could not reach" not in message


def test_other_client_errors_are_not_retried(fake_docsrs, client):
    fake_docsrs.fail("/crate/", status=403, times=None, body=b"forbidden for bots")
    with pytest.raises(UpstreamRejected, match="HTTP 403: forbidden for bots") as caught:
        client.get(f"{fake_docsrs.base_url}{CRATE}/json")
    assert not caught.value.transient
    assert fake_docsrs.count() == 1


def test_an_html_error_page_is_reported_by_its_text_not_its_markup(fake_docsrs, client):
    page = (
        b"<!doctype html><html><head><title>Blocked</title><style>body{color:red}</style></head>"
        b"<body><script>track()</script><h1>Access denied</h1>\n\n<p>Your client &amp; IP are blocked.</p>"
        + b"<p>" + b"x" * 5000 + b"</p></body></html>"
    )
    fake_docsrs.fail("/crate/", status=403, times=None, body=page, headers={"Content-Type": "text/html"})

    with pytest.raises(UpstreamRejected) as caught:
        client.get(f"{fake_docsrs.base_url}{CRATE}/json")

    message = str(caught.value)
    assert "HTTP 403: Access denied Your client & IP are blocked. xxx" in message
    assert "<" not in message and "track()" not in message and "color:red" not in message
    assert message.endswith("…") and len(message) < 400


def test_404_raises_unless_allowed(fake_docsrs, client):
    url = f"{fake_docsrs.base_url}/crate/nothing/1.0.0/json"
    with pytest.raises(NotFound):
        client.get(url)
    assert client.get(url, allow_404=True).status_code == 404


def test_redirects_are_followed_and_counted(fake_docsrs, raw_json):
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=zstd(raw_json))
    calls = []
    with HttpClient(rps=0, on_request=lambda: calls.append(1)) as http:
        # docs.rs answers a non-canonical spelling with a redirect to the canonical one.
        response = http.get(f"{fake_docsrs.base_url}/crate/Ferro_Fixture/{VERSION}/json")
    assert response.status_code == 200
    assert fake_docsrs.paths() == [f"/crate/Ferro_Fixture/{VERSION}/json", f"{CRATE}/json"]
    assert len(calls) == http.request_count == 2


def test_parse_retry_after_seconds_and_http_date():
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- ZIP safety --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../evil.html", "docs/../../evil.html", "/etc/evil.html", "C:/evil.html", "..\\..\\evil.html", "a\\b.html"],
)
def test_traversal_and_absolute_zip_entries_are_refused(name):
    data = make_zip({"ferro_fixture/index.html": b"<html>", name: b"<html>"})
    with pytest.raises(UnsafeArchive):
        read_zip_pages(data, max_total_bytes=BIG)


def test_symlink_zip_entries_are_refused():
    data = make_zip({"ferro_fixture/index.html": b"<html>"}, symlinks={"ferro_fixture/x.html": "/etc/passwd"})
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        read_zip_pages(data, max_total_bytes=BIG)


def test_zip_pages_keep_html_only_with_relative_paths(doc_zip):
    pages = read_zip_pages(doc_zip, max_total_bytes=BIG)
    assert "ferro_fixture/index.html" in pages and "help.html" in pages
    assert not any(p.endswith((".js", ".css", ".woff2")) for p in pages)
    assert pages["ferro_fixture/index.html"].lstrip().lower().startswith(b"<!doctype html>")


def test_a_single_wrapping_directory_is_stripped(doc_zip):
    with zipfile.ZipFile(io.BytesIO(doc_zip)) as archive:
        wrapped = make_zip({f"ferro_fixture-0.3.1/{n}": archive.read(n) for n in archive.namelist()})
    assert read_zip_pages(wrapped, max_total_bytes=BIG).keys() == read_zip_pages(doc_zip, max_total_bytes=BIG).keys()


def test_a_crate_directory_alone_is_not_mistaken_for_a_wrapper():
    data = make_zip({"ferro_fixture/index.html": b"<html>", "ferro_fixture/sync/index.html": b"<html>"})
    assert set(read_zip_pages(data, max_total_bytes=BIG)) == {
        "ferro_fixture/index.html",
        "ferro_fixture/sync/index.html",
    }


def test_zip_declared_size_over_the_limit_is_refused():
    data = make_zip({"a/index.html": b"<p>" * 1000, "a/b.html": b"<p>" * 1000})
    with pytest.raises(ArtifactTooLarge, match="4,000 bytes"):
        read_zip_pages(data, max_total_bytes=4000)


def test_zip_lying_about_its_size_is_never_accepted():
    body = b"<p>" * 400_000
    data = bytearray(make_zip({"a/index.html": body}))
    # Patch the uncompressed size in the local header and the central directory to 10 bytes.
    local = data.find(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, 10)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 10)
    with pytest.raises((ArtifactTooLarge, CorruptArtifact)):
        read_zip_pages(bytes(data), max_total_bytes=100_000)


def test_not_a_zip_is_corrupt():
    with pytest.raises(CorruptArtifact):
        read_zip_pages(b"PK\x03\x04 but not really", max_total_bytes=BIG)


# -- cache of fetched artifacts ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_saved_json_artifact_is_loaded_back_and_upserted(raw_json):
    artifact = decode_and_wrap(raw_json)
    save_artifact(name=NAME, version=VERSION, artifact=artifact)
    save_artifact(name=NAME, version=VERSION, artifact=artifact)

    row = FetchedArtifact.objects.get()
    assert row.crate_name == "ferro_fixture" and row.size < len(raw_json) / 3  # stored compressed
    loaded = load_cached_artifact(name="Ferro_Fixture", version=VERSION)
    assert loaded is not None and loaded.body == raw_json and loaded.kind == "json"
    assert (loaded.etag, loaded.sha256, loaded.requests) == (artifact.etag, artifact.sha256, 0)
    assert load_cached_artifact(name=NAME, version="9.9.9") is None


@pytest.mark.django_db
@pytest.mark.parametrize("served_name", ["ferro_fixture.json.zst", "ferro_fixture.json.gz"])
def test_downloaded_compressed_json_is_cached_as_downloaded(fake_docsrs, client, raw_json, served_name):
    served = (FIXTURES / "rustdoc" / served_name).read_bytes()
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=served)
    artifact = fetch(client)
    save_artifact(name=NAME, version=VERSION, artifact=artifact)
    assert bytes(FetchedArtifact.objects.get().body) == served  # not decoded and compressed again
    loaded = load_cached_artifact(name=NAME, version=VERSION)
    assert loaded is not None and loaded.body == raw_json and loaded.sha256 == artifact.sha256


@pytest.mark.django_db
def test_saved_zip_and_crawled_pages_are_loaded_back(fake_docsrs, client, doc_zip):
    fake_docsrs.add_crate(NAME, versions=[VERSION], pages=crate_pages(doc_zip))
    crawled = fetch(client)
    save_artifact(name=NAME, version=VERSION, artifact=crawled)
    loaded = load_cached_artifact(name=NAME, version=VERSION)
    assert loaded.kind == "pages" and loaded.pages == crawled.pages

    fake_docsrs.set_release(NAME, VERSION, zip_bytes=doc_zip)
    zipped = fetch(client)
    save_artifact(name=NAME, version=VERSION, artifact=zipped)
    loaded = load_cached_artifact(name=NAME, version=VERSION)
    assert loaded.kind == "zip" and loaded.body == doc_zip and loaded.pages == zipped.pages


@pytest.mark.django_db
def test_damaged_cache_row_is_ignored(raw_json):
    save_artifact(name=NAME, version=VERSION, artifact=decode_and_wrap(raw_json))
    FetchedArtifact.objects.update(body=b"\x28\xb5\x2f\xfd broken")
    assert load_cached_artifact(name=NAME, version=VERSION) is None


def decode_and_wrap(raw_json: bytes):
    from crates.pipeline.types import Artifact

    return Artifact(
        kind="json",
        url=f"https://docs.rs{CRATE}/json",
        body=raw_json,
        etag='"abc"',
        sha256=hashlib.sha256(raw_json).hexdigest(),
    )


def test_unusable_urls_fail_clearly_without_retries():
    with HttpClient(rps=0) as http, pytest.raises(UpstreamRejected, match="InvalidSchema") as caught:
        http.get("ftp://docs.rs/crate/x/1.0.0/json")
    assert not caught.value.transient
    assert http.request_count == 1


def test_every_response_is_read_with_quick_acks(fake_docsrs, client, monkeypatch):
    # Without them a kept-alive connection waits ~40 ms per response on a Nagle server (delayed ACK).
    from crates.pipeline import http

    seen = []
    original = http._quickack

    def spy(sock):
        seen.append((sock.family, sock.type))
        original(sock)

    monkeypatch.setattr(http, "_quickack", spy)
    served = (FIXTURES / "rustdoc" / "ferro_fixture.json.zst").read_bytes()
    fake_docsrs.add_crate(NAME, versions=[VERSION], json_bytes=served)
    resolved = resolve_release(name=NAME, version="latest", client=client)
    fetch(client)
    assert resolved.version == VERSION
    assert client.request_count == 3
    assert seen == [(socket.AF_INET, socket.SOCK_STREAM)] * 3


# -- proxies from the environment -------------------------------------------------------------------------------


def test_proxy_variables_are_honoured_per_host(httpserver, monkeypatch):
    # A forward proxy gets the absolute URL; the session reads the environment once per host, not per request.
    httpserver.expect_request("/crate/x/1.0.0/json").respond_with_data(b"via proxy")
    monkeypatch.setenv("HTTP_PROXY", httpserver.url_for("/"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with HttpClient(rps=0, max_retries=0) as http:
        for _ in range(2):
            assert http.get("http://docs.example.invalid/crate/x/1.0.0/json").content == b"via proxy"
        # NO_PROXY: straight to the server itself.
        direct = http.get(httpserver.url_for("/crate/x/1.0.0/json")).content
    assert direct == b"via proxy"
    hosts = [request.headers["Host"] for request, _response in httpserver.log]
    assert hosts == ["docs.example.invalid", "docs.example.invalid", f"{httpserver.host}:{httpserver.port}"]


def test_a_new_client_keeps_the_threads_connections_but_no_cookies_or_proxy_settings(httpserver, monkeypatch):
    httpserver.expect_request("/set").respond_with_data(b"ok", headers={"Set-Cookie": "session=abc; Path=/"})
    httpserver.expect_request("/echo").respond_with_handler(
        lambda request: Response(request.headers.get("Cookie", "none"))
    )
    with HttpClient(rps=0, max_retries=0) as first:
        first.get(httpserver.url_for("/set"))
        assert first.get(httpserver.url_for("/echo")).content == b"session=abc"
    with HttpClient(rps=0, max_retries=0) as second:
        assert second.session is first.session  # the thread's pool of kept-alive connections
        assert second.get(httpserver.url_for("/echo")).content == b"none"
        # The proxy environment is read again by each client.
        monkeypatch.setenv("HTTP_PROXY", httpserver.url_for("/"))
    with HttpClient(rps=0, max_retries=0) as third:
        httpserver.expect_request("/via").respond_with_data(b"via proxy")
        assert third.get("http://docs.example.invalid/via").content == b"via proxy"
