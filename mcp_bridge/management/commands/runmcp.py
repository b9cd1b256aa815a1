"""Serve the Ferrodex MCP tools over stdio (default) or streamable HTTP."""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError

from crates.pipeline.warmup import start_background_load
from mcp_bridge.http_auth import ApiKeyGate
from mcp_bridge.server import build_server

logger = logging.getLogger(__name__)

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Command(BaseCommand):
    help = (
        "Run the MCP server. stdio (default) is for MCP clients that start the server themselves; "
        "'--transport http' serves streamable HTTP at http://HOST:PORT/mcp."
    )
    # stdout is the protocol channel in stdio mode: the system-check banner must not land there.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
        parser.add_argument("--host", default="127.0.0.1", help="HTTP only. Default 127.0.0.1 (this machine only).")
        parser.add_argument("--port", type=int, default=8765, help="HTTP only. Default 8765.")
        parser.add_argument("--path", default="/mcp", help="HTTP only. URL path of the endpoint. Default /mcp.")
        parser.add_argument(
            "--no-auth", action="store_true",
            help="HTTP only, loopback hosts only: serve without API keys (by default every request needs one, "
                 "as 'Authorization: Bearer <key>' or 'X-API-Key: <key>').",
        )  # fmt: skip

    def handle(self, *args, **options) -> None:
        # The first search_rust_docs of a session must not wait for the model: load it while the client connects.
        start_background_load()
        server = build_server()
        if options["transport"] == "stdio":
            logger.info("MCP server %s on stdio", server.name)
            server.run("stdio")
            return
        host, port, path = options["host"], options["port"], options["path"]
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, not {port}.")
        if not path.startswith("/"):
            raise CommandError("--path must start with '/'.")
        if options["no_auth"] and host not in LOCAL_HOSTS:
            raise CommandError(
                f"--no-auth is for this machine only (--host 127.0.0.1): on {host} anyone who reaches the port "
                "could add and remove crates. Keep the API keys (create one with 'manage.py create_api_key NAME')."
            )
        app = server.streamable_http_app(streamable_http_path=path, host=host)
        if not options["no_auth"]:
            app = ApiKeyGate(app)
        auth = "without API keys" if options["no_auth"] else "API key required"
        logger.info("MCP server %s on http://%s:%s%s (%s)", server.name, host, port, path, auth)
        _serve(app, host=host, port=port, log_level=server.settings.log_level.lower())


def _serve(app, *, host: str, port: int, log_level: str) -> None:
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level)).run()
