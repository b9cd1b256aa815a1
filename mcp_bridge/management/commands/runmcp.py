"""Serve the Ferrodex MCP tools over stdio (default) or streamable HTTP."""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError

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

    def handle(self, *args, **options) -> None:
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
        if host not in LOCAL_HOSTS:
            # The MCP endpoint has no authentication of its own: anyone who reaches it can add and remove crates.
            logger.warning("MCP HTTP server bound to %s: reachable from other machines and unauthenticated", host)
        logger.info("MCP server %s on http://%s:%s%s", server.name, host, port, path)
        server.run("streamable-http", host=host, port=port, streamable_http_path=path)
