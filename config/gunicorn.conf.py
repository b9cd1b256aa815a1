"""gunicorn settings of the web server Ferrodex ships (scripts/up: ``gunicorn -c config/gunicorn.conf.py``).

A request gunicorn refuses itself (a request line or a header over its limits) never reaches Django; its
error page was HTML. It answers in the API's one JSON error shape instead, and the request line may be as
long as gunicorn allows, so every query the API accepts (``q`` up to 500 characters, even as %-encoded
4-byte UTF-8) reaches Django's validation and its 422.
"""

import json

from gunicorn import util

limit_request_line = 8190  # gunicorn's maximum (0 would mean unlimited)
limit_request_field_size = 8190

_CODES = {414: "uri_too_long", 431: "header_too_large", 400: "bad_request", 403: "forbidden", 417: "bad_request",
          500: "internal_error", 501: "not_implemented"}  # fmt: skip
_WHY = {
    414: f"The request line is longer than {limit_request_line} bytes, more than any valid request needs "
    "(a search query is at most 500 characters). Shorten the query string.",
    431: f"A request header is larger than {limit_request_field_size} bytes, or there are too many headers.",
}


def _write_json_error(sock, status_int, reason, mesg):
    """gunicorn's own error answer (util.write_error) in the API's error shape."""
    message = _WHY.get(status_int) or f"{reason}: {mesg}"[:500]
    body = json.dumps({"error": {"code": _CODES.get(status_int, "bad_request"), "message": message,
                                 "details": {"reason": reason}}})  # fmt: skip
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body.encode())}\r\n\r\n")  # fmt: skip
    util.write_nonblock(sock, (head + body).encode("latin1", "replace"))


util.write_error = _write_json_error  # workers are forked from the master that read this file

