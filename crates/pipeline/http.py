"""The one HTTP client every pipeline stage uses to talk to docs.rs and crates.io.

Polite by construction: an identifying User-Agent, timeouts, a per-host rate limit shared by every worker
(``crates.pipeline.ratelimit``), retries with exponential backoff and full jitter for 429, 5xx and connection
failures that honour ``Retry-After``, and a size limit on every body it reads.
"""

from __future__ import annotations

import contextlib
import email.utils
import html
import logging
import math
import random
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from crates.errors import ArtifactTooLarge, NotFound, RateLimited, UpstreamRejected, UpstreamUnavailable
from crates.pipeline import ratelimit

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
READ_CHUNK_BYTES = 256 * 1024
# Bodies of error answers are read only for the message; never let them count against max_bytes.
ERROR_BODY_BYTES = 64 * 1024
# How often a wait between attempts looks whether the job was cancelled (the job reporter polls every 0.1 s).
CANCEL_CHECK_SECONDS = 0.1
# requests' own exceptions for "the request or the body transfer failed on the way": worth another try.
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class DownloadTooSlow(requests.Timeout):
    """The body kept coming, too slowly to finish within HTTP_DOWNLOAD_TIMEOUT (a per-read timeout never fires)."""


class HttpClient:
    """A ``requests.Session`` with retries, the shared rate limit and size guards.

    ``request_count`` counts every HTTP request actually sent (retries and redirects included); ``on_request``
    is called once per request too, so a job can count them. ``check_cancelled`` (a job's
    ``Progress.check_cancelled``) is called before every attempt and during the waits between them, so a
    cancelled job stops within a fraction of a second instead of after the whole retry budget.
    ``on_wait`` is told when a wait between attempts ends and why it is waiting (a line such as "Retrying in
    9 s (at 03:12:45 UTC) after HTTP 429 from docs.rs (attempt 1 of 6)": the countdown first, so a narrow
    progress line still shows it), again each second as it counts down, and ``None`` once it is over, so what
    a job shows while it waits stays true.
    """

    def __init__(
        self,
        *,
        rps: float | None = None,
        max_retries: int | None = None,
        on_request: Callable[[], None] | None = None,
        check_cancelled: Callable[[], None] | None = None,
        on_wait: Callable[[str | None], None] | None = None,
    ) -> None:
        self.rps = settings.RATE_LIMIT_RPS if rps is None else rps
        self.on_wait = on_wait
        self.max_retries = settings.HTTP_MAX_RETRIES if max_retries is None else max(0, max_retries)
        self.timeout = settings.HTTP_TIMEOUT
        self.download_timeout = settings.HTTP_DOWNLOAD_TIMEOUT
        self.backoff_base = settings.HTTP_BACKOFF_BASE
        self.backoff_max = settings.HTTP_BACKOFF_MAX
        self.on_request = on_request
        self.check_cancelled = check_cancelled
        self.request_count = 0
        self.session = _thread_session()
        self.session.headers["User-Agent"] = settings.HTTP_USER_AGENT

    def close(self) -> None:
        """Nothing to release: the connections stay in this thread's pool for its next client."""

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        allow_404: bool = False,
        max_retries: int | None = None,
    ) -> requests.Response:
        """GET ``url`` and return the response with its body read (``.content``).

        2xx and 304 are returned; 404 is returned when ``allow_404`` (the caller raises its own, more specific
        error) and raises ``NotFound`` otherwise. Redirects are followed here, one rate-limited request each.
        ``max_retries`` overrides the client's retry budget for this call (best-effort lookups use a small one).
        """
        limit = settings.MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes
        retries = self.max_retries if max_retries is None else max(0, max_retries)
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._get_with_retries(current, headers=headers, max_bytes=limit, retries=retries)
            if not response.is_redirect:
                return _check_status(response, url=current, allow_404=allow_404)
            current = urljoin(current, response.headers["Location"])
        raise UpstreamRejected(
            f"{url} redirected more than {MAX_REDIRECTS} times; giving up.", url=url, host=_host(url)
        )

    # -- one URL, with retries ---------------------------------------------------------------------------
    def _get_with_retries(
        self, url: str, *, headers: Mapping[str, str] | None, max_bytes: int, retries: int
    ) -> requests.Response:
        host = _host(url)
        attempts = retries + 1
        status: int | None = None
        error: Exception | None = None
        for attempt in range(1, attempts + 1):
            self._before_request(host)
            retry_after: float | None = None
            try:
                _waiting.check_cancelled = self.check_cancelled
                try:
                    response = self.session.get(
                        url, headers=dict(headers or {}), timeout=self.timeout, stream=True, allow_redirects=False
                    )
                finally:
                    _waiting.check_cancelled = None
                status, error = response.status_code, None
                if status != 429 and status < 500:
                    _read_body(
                        response,
                        url=url,
                        max_bytes=max_bytes,
                        deadline=time.monotonic() + self.download_timeout,
                        check_cancelled=self.check_cancelled,
                    )
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                response.close()
            except DownloadTooSlow as exc:
                # Another attempt would take as long again: let the job's own retry, with its backoff, decide.
                raise _give_up(url=url, host=host, status=None, error=exc, attempts=attempt) from exc
            except TRANSPORT_ERRORS as exc:
                status, error = None, exc
            except requests.RequestException as exc:
                # A malformed URL, an undecodable Content-Encoding...: another try would fail the same way.
                raise UpstreamRejected(f"GET {url} failed: {type(exc).__name__}: {exc}", url=url, host=host) from exc
            if attempt == attempts:
                break
            delay = self._retry_delay(attempt=attempt, retry_after=retry_after)
            logger.warning(
                "GET %s failed (%s), attempt %d/%d; retrying in %.2fs",
                url,
                f"HTTP {status}" if status else f"{type(error).__name__}: {error}",
                attempt,
                attempts,
                delay,
            )
            if status == 429 and retry_after and self.rps > 0:
                ratelimit.defer_host(host=host, seconds=delay)
            reason = f"HTTP {status}" if status else type(error).__name__
            self._sleep(delay, why=f"{reason} from {host} (attempt {attempt} of {attempts})")
        raise _give_up(url=url, host=host, status=status, error=error, attempts=attempts)

    def _before_request(self, host: str) -> None:
        if self.check_cancelled is not None:
            self.check_cancelled()
        ratelimit.acquire_slot(host=host, rps=self.rps)
        self.request_count += 1
        if self.on_request is not None:
            self.on_request()

    def _sleep(self, seconds: float, *, why: str = "") -> None:
        """Wait between attempts; the backoff can reach HTTP_BACKOFF_MAX, too long to ignore a cancel."""
        if self.check_cancelled is None and self.on_wait is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        shown: int | None = None
        try:
            while (left := deadline - time.monotonic()) > 0:
                # The countdown changes once a second: the notice is refreshed no more often than that.
                if self.on_wait is not None and math.ceil(left) != shown:
                    shown = math.ceil(left)
                    self.on_wait(f"Retrying in {shown} s (at {until:%H:%M:%S} UTC) after {why}")
                time.sleep(min(left, CANCEL_CHECK_SECONDS))
                if self.check_cancelled is not None:
                    self.check_cancelled()
        finally:
            if self.on_wait is not None and shown is not None:
                self.on_wait(None)

    def _retry_delay(self, *, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        # Full jitter (AWS architecture blog): spreads the retries of many workers instead of synchronising them.
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


# -- transport -----------------------------------------------------------------------------------------------
# A kept-alive connection is in Linux's "interactive" mode once we send a request, so the ACK of the response's
# first segment is delayed up to 40 ms. A server that writes headers and body in two sends without TCP_NODELAY
# (Python's http.server, the docs.rs replica) holds the body back until that ACK (Nagle), on every request but a
# connection's first (bench/http_quickack.py). Asking for quick ACKs after each request is sent removes the
# stall; the flag is not sticky, hence per response. No-op where TCP_QUICKACK does not exist.
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _quickack(sock: socket.socket | None) -> None:
    if _TCP_QUICKACK is None or sock is None:
        return
    with contextlib.suppress(OSError):  # not a TCP socket (a test double): nothing to tune
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


_sessions = threading.local()


def _thread_session() -> _Session:
    """This thread's session, made ready for a new client: its kept-alive connections are reused (a worker's
    next ingest skips the TCP and TLS handshakes with docs.rs and the index), nothing else carries over."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = _Session()
        for prefix in ("http://", "https://"):
            session.mount(prefix, _QuickAckAdapter())
    session.cookies.clear()
    session.forget_environment()
    return session


class _Session(requests.Session):
    """A requests session that reads the proxy and CA bundle environment once per host per client.

    requests looks both up on every request (``get_environ_proxies`` parses the proxy variables and
    checks ``no_proxy``), a noticeable share of what a small crate's ingest does beside the model.
    What a client saw at its first request to a host holds for the rest of that client (one ingest).
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple, dict] = {}

    def forget_environment(self) -> None:
        self._environment.clear()

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream, verify, cert)
        merged = self._environment.get(key)
        if merged is None:
            merged = self._environment[key] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        return {**merged, "proxies": dict(merged["proxies"])}


class _Waiting(threading.local):
    # The job's cancel check while this thread sends a request: the connection classes below cannot be handed
    # it through requests, and a thread only ever waits on its own request.
    check_cancelled: Callable[[], None] | None = None


_waiting = _Waiting()


def _await_answer(sock: socket.socket | None, *, timeout: float | None) -> None:
    """Wait for the answer's first bytes in short slices, calling the job's cancel check in between.

    A server that accepts and stays silent would otherwise hold a cancelled job for the whole HTTP_TIMEOUT
    (30 s by default) per attempt. Raises TimeoutError at ``timeout``, as the read itself would.
    """
    check = _waiting.check_cancelled
    if check is None or sock is None or (hasattr(sock, "pending") and sock.pending()):
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        check()
        wait = CANCEL_CHECK_SECONDS if deadline is None else min(CANCEL_CHECK_SECONDS, deadline - time.monotonic())
        if wait <= 0:
            raise TimeoutError("timed out")
        try:
            readable, _, _ = select.select([sock], [], [], wait)
        except (OSError, ValueError):  # closed under us: let the read report it
            return
        if readable:
            return


class _QuickAckHTTPConnection(HTTPConnection):
    def getresponse(self, *args, **kwargs):
        _quickack(self.sock)
        _await_answer(self.sock, timeout=_seconds(self.timeout))
        return super().getresponse(*args, **kwargs)


class _QuickAckHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args, **kwargs):
        _quickack(self.sock)
        _await_answer(self.sock, timeout=_seconds(self.timeout))
        return super().getresponse(*args, **kwargs)


def _seconds(timeout: object) -> float | None:
    """urllib3 sets the connection's timeout to the read timeout (a number, or its default sentinel)."""
    return float(timeout) if isinstance(timeout, int | float) else None


class _QuickAckHTTPPool(HTTPConnectionPool):
    ConnectionCls = _QuickAckHTTPConnection


class _QuickAckHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _QuickAckHTTPSConnection


class _QuickAckAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _QuickAckHTTPPool, "https": _QuickAckHTTPSPool}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


def _read_body(
    response: requests.Response,
    *,
    url: str,
    max_bytes: int,
    deadline: float,
    check_cancelled: Callable[[], None] | None = None,
) -> None:
    """Read the streamed body into ``response.content``, refusing more than ``max_bytes`` for a success.

    Reads what has arrived (not whole chunks), so a cancel is seen and ``deadline`` (monotonic) is kept even
    while a slow server trickles the body in: each read only waits HTTP_TIMEOUT for the next bytes.
    """
    status = response.status_code
    if status == 304 or response.is_redirect:
        response.close()
        response._content = b""
        return
    strict = 200 <= status < 300
    limit = max_bytes if strict else ERROR_BODY_BYTES
    declared = response.headers.get("Content-Length", "")
    if strict and declared.isdigit() and int(declared) > limit:
        response.close()
        raise _too_large(url=url, limit=limit, size=int(declared))
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in _arrived_chunks(response, deadline=deadline, check_cancelled=check_cancelled):
            total += len(chunk)
            if total > limit:
                response.close()
                if strict:
                    raise _too_large(url=url, limit=limit, size=None)
                break
            chunks.append(chunk)
    except BaseException:
        response.close()
        raise
    # requests exposes a streamed body through .content once _content holds it.
    response._content = b"".join(chunks)


def _arrived_chunks(
    response: requests.Response, *, deadline: float, check_cancelled: Callable[[], None] | None
) -> Iterator[bytes]:
    """The body as it arrives (``read1``), decoded, with urllib3's errors turned into requests' own as
    ``Response.iter_content`` does, so the retry loop classifies them the same way."""
    raw = response.raw
    while True:
        if check_cancelled is not None:
            check_cancelled()
        if time.monotonic() > deadline:
            raise DownloadTooSlow(f"the body was still arriving after {settings.HTTP_DOWNLOAD_TIMEOUT:g} s")
        try:
            chunk = raw.read1(READ_CHUNK_BYTES, decode_content=True)
        except ProtocolError as exc:
            raise requests.exceptions.ChunkedEncodingError(exc) from exc
        except DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(exc) from exc
        except ReadTimeoutError as exc:
            raise requests.exceptions.ReadTimeout(exc) from exc
        if not chunk:
            return
        yield chunk


def _too_large(*, url: str, limit: int, size: int | None) -> ArtifactTooLarge:
    said = f" ({size:,} bytes announced)" if size is not None else ""
    return ArtifactTooLarge(
        f"Refusing to download {url}: it is larger than the limit of {limit:,} bytes{said}. "
        "Raise MAX_DOWNLOAD_BYTES if this crate really is that big.",
        url=url,
        limit=limit,
        size=size,
    )


def _check_status(response: requests.Response, *, url: str, allow_404: bool) -> requests.Response:
    status = response.status_code
    if 200 <= status < 300 or status == 304:
        return response
    if status == 404:
        if allow_404:
            return response
        raise NotFound(f"{url} does not exist (HTTP 404).", url=url)
    snippet = _error_text(response)
    raise UpstreamRejected(
        f"{_host(url)} refused {url} with HTTP {status}" + (f": {snippet}" if snippet else "."),
        url=url,
        status=status,
    )


def _error_text(response: requests.Response, *, limit: int = 200) -> str:
    """What an error answer says, for the message: the text of an HTML page (a proxy's or a CDN's 403 page is
    mostly markup and styles), whitespace collapsed, cut at ``limit`` characters."""
    text = response.content[:ERROR_BODY_BYTES].decode("utf-8", "replace")
    if "html" in response.headers.get("Content-Type", "").lower() or text.lstrip()[:1] == "<":
        text = _HTML_NOISE.sub(" ", text)
        text = _HTML_TAG.sub(" ", text)
        text = html.unescape(text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_HTML_NOISE = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")


def _give_up(
    *, url: str, host: str, status: int | None, error: Exception | None, attempts: int
) -> RateLimited | UpstreamUnavailable:
    context = {"url": url, "host": host, "status": status, "attempts": attempts}
    if status == 429:
        return RateLimited(
            f"{host} is rate limiting us: HTTP 429 Too Many Requests on all {attempts} attempts for {url}. "
            "Try again later, or lower RATE_LIMIT_RPS.",
            **context,
        )
    if status is not None:
        return UpstreamUnavailable(
            f"{host} answered HTTP {status} on all {attempts} attempts for {url}: it looks down or overloaded. "
            "Try again later.",
            **context,
        )
    if isinstance(error, DownloadTooSlow):
        return UpstreamUnavailable(
            f"{host} sent {url} too slowly: {error} (HTTP_DOWNLOAD_TIMEOUT). Try again later, or raise "
            "HTTP_DOWNLOAD_TIMEOUT if the link to it is that slow.",
            **context,
        )
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        # The answer started and broke off: the server is there, its downloads are not arriving whole.
        return UpstreamUnavailable(
            f"{host} cut the download off before its end on all {attempts} attempts for {url} (a truncated "
            f"body: {error}). Try again later.",
            **context,
        )
    if isinstance(error, requests.exceptions.ReadTimeout):
        # Connected, but the answer (or the rest of it) did not come: "could not reach" would send the user
        # checking a network that works.
        return UpstreamUnavailable(
            f"{host} accepted the connection but sent nothing for {settings.HTTP_TIMEOUT:g} s (HTTP_TIMEOUT) on all "
            f"{attempts} attempts for {url}: it looks overloaded or stuck. Try again later.",
            **context,
        )
    return UpstreamUnavailable(
        f"Could not reach {host} after {attempts} attempts for {url} ({type(error).__name__}: {error}). "
        "Check the network or try again later.",
        **context,
    )
