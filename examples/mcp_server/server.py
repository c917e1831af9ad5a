"""An MCP server (the official ``mcp`` Python SDK, streamable HTTP) that accepts only Ostiary's tokens.

Every MCP request needs an access token from the issuer whose audience is this server's URL and which
carries ``notes:read``. Without one, the SDK answers 401 with ``WWW-Authenticate: Bearer
resource_metadata="…"``; that document (RFC 9728, served by the SDK) names Ostiary, so an MCP client finds
where to sign in on its own. The tools see who called through the verified token.

    python server.py --issuer http://127.0.0.1:8000 --url http://127.0.0.1:9400/mcp --port 9400
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette

from ostiary.resource.mcp import McpTokenVerifier, auth_settings

SCOPES = ["notes:read"]
NOTES = {"welcome": "Signed in through Ostiary: this MCP server trusts its tokens and nothing else.",
         "todo": "Register your MCP client, then ask it to call list_notes."}


def create_app(issuer: str, url: str) -> Starlette:
    """The MCP server at ``url`` (its path is the MCP endpoint), trusting tokens from ``issuer``."""
    server: MCPServer = MCPServer(
        "Ostiary notes", instructions="Notes readable by whoever signed in through Ostiary.",
        token_verifier=McpTokenVerifier.for_server(issuer, url), auth=auth_settings(issuer, url, SCOPES))

    @server.tool()
    def whoami() -> dict[str, Any]:
        """Who is calling: the token's subject (the person), client and scopes."""
        token = get_access_token()
        assert token is not None  # the SDK ran this tool only after our verifier accepted the token
        return {"subject": token.subject, "client_id": token.client_id, "scopes": token.scopes,
                "resource": token.resource}

    @server.tool()
    def list_notes() -> dict[str, str]:
        """The notes this server keeps."""
        return NOTES

    parts = urlsplit(url)
    return server.streamable_http_app(streamable_http_path=parts.path or "/mcp", host=parts.hostname or "127.0.0.1")


def main() -> None:
    parser = argparse.ArgumentParser(description="An MCP server protected by Ostiary.")
    parser.add_argument("--issuer", required=True, help="Ostiary's issuer URL")
    parser.add_argument("--url", required=True, help="this server's public MCP URL (the tokens' audience)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.issuer, args.url), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
