"""``ostiary``: run the server, migrate the database, administer clients and keys.

``login``, ``whoami``, ``logout``, ``recommend`` and ``audit`` need only the base install (the toolkits). Every
other command is part of the server: without the ``server`` extra, each says so in one line instead of failing on
an import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from ._common import (
    SERVER_EXTRA_HINT,
    SERVER_MODULES,
    console,
    err_console,
    fail,
    print_json,
    run,
    set_config,
    settings,
)
from .audit_cmds import audit_app, recommend_cmd
from .login_cmds import login, logout, whoami

if TYPE_CHECKING:
    from ..config import Settings

app = typer.Typer(
    name="ostiary",
    help="Ostiary: an OAuth 2.1 + OpenID Connect authorization server that makes the right flow the default.\n\n"
         "Settings come from OSTIARY_* environment variables and/or a TOML file (--config); "
         "see the README's Configuration section.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_GROUPS = {"client": "Register and manage OAuth clients.", "keys": "Signing keys: list, rotate, retire.",
           "user": "Users: create, list, reset passwords and second factors.",
           "federation": "CI/CD federation: trust policies for external OIDC issuers.",
           "resource": "Resources (RFC 8707): the APIs tokens may be for."}


def _server_missing(name: str, help_text: str) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        fail(f"ostiary {name}: {SERVER_EXTRA_HINT}")

    command.__doc__ = f"{help_text} (needs the server: pip install 'ostiary\\[server]')"
    return command


try:
    from .admin_cmds import client_app, keys_app
    from .federation_cmds import federation_app
    from .resource_cmds import resource_app
    from .user_cmds import user_app
except ModuleNotFoundError as exc:  # the base install: the client toolkit without the server
    if (exc.name or "").split(".")[0] not in SERVER_MODULES:
        raise
    for _name, _help in _GROUPS.items():
        app.command(_name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                    add_help_option=False)(_server_missing(_name, _help))
else:
    app.add_typer(client_app, name="client")
    app.add_typer(keys_app, name="keys")
    app.add_typer(user_app, name="user")
    app.add_typer(federation_app, name="federation")
    app.add_typer(resource_app, name="resource")
for _cmd in (login, whoami, logout):  # the device-flow login toolkit's reference commands
    app.command()(_cmd)
app.command("recommend")(recommend_cmd)  # advice and audit need only the base install, like login
app.add_typer(audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        try:
            console.print(f"ostiary {dist_version('ostiary')}")
        except PackageNotFoundError:
            console.print("ostiary (version unknown: not installed as a package)")
        raise typer.Exit()


@app.callback()
def _root(config: str | None = typer.Option(None, "--config", "-c", envvar="OSTIARY_CONFIG",
                                             help="TOML settings file (environment variables override it)."),
          _show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                             help="Print the version and exit.")
          ) -> None:
    set_config(config)
    if config:
        os.environ["OSTIARY_CONFIG"] = os.path.abspath(config)  # server workers read it too


@app.command()
def migrate(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create or upgrade the database schema (Alembic). Safe to run again."""
    from ..store.sql import check_schema, upgrade

    s = settings()
    before = run(lambda: check_schema(s.database_url))
    if before.state == "newer":
        fail(before.message)
    upgrade(s.database_url)
    after = run(lambda: check_schema(s.database_url))
    if as_json:
        print_json({"before": before.current, "after": after.current})
    else:
        console.print(f"database at revision {after.current} (was {before.current or 'empty'})")


async def _first_signing_key(s: Settings) -> None:
    from .._clock import SystemClock
    from ..core.keys import ensure_signing_key
    from ..store.sql import SqlStore

    store = SqlStore.from_url(s.database_url)
    try:
        await ensure_signing_key(store, s.policy(), s.master_keys().key_encryption, SystemClock())
    finally:
        await store.close()


def _serve(host: str, port: int, workers: int, server: str) -> None:
    from ..store.sql import check_schema
    from ..web.logs import configure_logging, server_log_dictconfig
    from ..web.metrics_dir import multiproc_dir

    s = settings()
    status = run(lambda: check_schema(s.database_url))
    if status.state != "current":
        fail(status.message)
    s.master_secret()  # create the development key file once, before workers race for it
    run(lambda: _first_signing_key(s))  # likewise the first signing key: two workers would each create one
    configure_logging(s.log_level, s.log_format)  # the parent's own lines are JSON lines too
    listener = s.server.metrics_listener() if s.metrics else None
    target = "ostiary.web.app:app_from_env"
    tls = s.server.tls_cert_file is not None
    banner = (f"serving {s.issuer} on {'https' if tls else 'http'}://{host}:{port} with {workers} {server} worker(s); "
              f"database {s.database_url.split('://')[0]}"
              + (f"; metrics on http://{s.server.metrics_address}/metrics" if listener else ""))
    with contextlib.ExitStack() as stack:
        if (workers > 1 or listener) and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            stack.enter_context(multiproc_dir())  # removed on exit; a killed server's is removed at next start
        if listener:
            from ..web.metrics import start_listener  # after PROMETHEUS_MULTIPROC_DIR: prometheus_client reads it once

            try:
                start_listener(*listener)
            except OSError as exc:
                fail(f"cannot listen for metrics on {s.server.metrics_address} (server.metrics_address): "
                     f"{exc.strerror}")
        if s.log_format == "json":
            logging.getLogger("ostiary.server").info(banner, extra={"workers": workers, "server": server})
        else:
            err_console.print("ostiary: " + banner)
        if server == "granian":
            if tls:
                fail("the TLS listener (server.tls_cert_file) runs on Uvicorn: use --server uvicorn, or terminate "
                     "TLS at a proxy")
            from granian import Granian
            from granian.constants import Interfaces

            # Granian reads no forwarding header itself; web.client_ip decides the client address
            Granian(target, address=host, port=port, interface=Interfaces.ASGI, workers=workers, factory=True,
                    log_access=False, workers_kill_timeout=10,
                    log_dictconfig=server_log_dictconfig(s.log_level, s.log_format)).serve()
            return
        import uvicorn

        from ..web.protocol import uvicorn_http_option
        from ..web.workers import reuse_port_supported, serve_uvicorn_workers

        # proxy_headers off: Uvicorn would believe X-Forwarded-For from 127.0.0.1; web.client_ip decides instead,
        # from server.trusted_proxies
        options: dict[str, Any] = {"log_config": None, "access_log": False, "timeout_graceful_shutdown": 10,
                                   "server_header": False, "proxy_headers": False,
                                   **uvicorn_http_option(), **_tls_options(s)}  # request-head limits
        if workers > 1 and reuse_port_supported():
            # one listening socket per worker, so the kernel spreads connections (see web/workers.py)
            code = serve_uvicorn_workers(target, host, port, workers, options,
                                         log_config=(s.log_level, s.log_format))
        else:
            uvicorn.run(target, factory=True, host=host, port=port, workers=workers, **options)
            code = 0
    if code:
        raise typer.Exit(code)


def _tls_options(s: Any) -> dict[str, Any]:
    """Uvicorn's TLS options from ``server.tls_*``: a certificate and key make the listener HTTPS; a client CA
    bundle makes it ask for client certificates (mutual TLS, RFC 8705), optional unless required."""
    import ssl

    srv = s.server
    if srv.tls_cert_file is None:
        return {}
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        path = getattr(srv, name)
        if path is not None and not os.path.isfile(path):
            fail(f"server.{name}: {path} is not a file")
    options: dict[str, Any] = {"ssl_certfile": srv.tls_cert_file, "ssl_keyfile": srv.tls_key_file}
    if srv.tls_client_ca_file is not None:
        options["ssl_ca_certs"] = srv.tls_client_ca_file
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED if srv.tls_client_cert_required else ssl.CERT_OPTIONAL
    return options


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Bind address (default server.host, 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port (default server.port, 8000)."),
    workers: int | None = typer.Option(None, "--workers", "-w",
                                       help="Worker processes (default server.workers; use the core count)."),
    server: str | None = typer.Option(None, "--server", help="uvicorn or granian (default server.implementation)."),
) -> None:
    """Run the authorization server. Refuses to start on an unmigrated or newer database."""
    s = settings()
    impl = server or s.server.implementation
    if impl not in ("uvicorn", "granian"):
        fail("--server must be uvicorn or granian")
    _serve(host or s.server.host, port or s.server.port, workers or s.server.workers, impl)


@app.command()
def demo(
    port: int = typer.Option(8000, "--port", help="Port on 127.0.0.1."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Set up and print, but do not start the server."),
) -> None:
    """Set up a local server on SQLite with a demo client, print how to try it, and serve."""
    from ..admin.service import AdminError, AdminService, ClientCreate
    from ..store.sql import SqlStore, upgrade

    os.makedirs(".demo", exist_ok=True)
    os.environ.setdefault("OSTIARY_ISSUER", f"http://127.0.0.1:{port}")
    os.environ.setdefault("OSTIARY_DATABASE_URL", "sqlite:///.demo/ostiary.db")
    os.environ.setdefault("OSTIARY_SECRET_KEY_FILE", ".demo/secret.key")
    os.environ.setdefault("OSTIARY_LOG_FORMAT", "text")
    s = settings()
    upgrade(s.database_url)

    async def setup() -> tuple[str, str]:
        from .._clock import SystemClock

        store = SqlStore.from_url(s.database_url)
        kek, hash_key, _ = s.master_keys()
        svc = AdminService(store, s.policy(), SystemClock(), hash_key, kek)
        try:
            try:
                client, secret = await svc.create_client(ClientCreate(
                    name="Demo service", client_id="demo-service", scopes=["api:read", "api:write"],
                    audiences=["https://api.example.com"]))
            except AdminError:
                client, secret = await svc.rotate_secret("demo-service", overlap=0)
            assert secret is not None
            return client.client_id, secret
        finally:
            await store.close()

    client_id, secret = run(setup)
    from .demo_users import print_demo_users, setup_demo_users

    demo_users = run(lambda: setup_demo_users(s))
    info: dict[str, Any] = {"issuer": s.issuer, "client_id": client_id, "client_secret": secret}
    console.rule("[bold]Ostiary demo")
    console.print(f"Issuer:     {s.issuer}")
    console.print(f"Discovery:  {s.issuer}/.well-known/openid-configuration")
    console.print(f"Client:     {info['client_id']}")
    console.print(f"Secret:     {info['client_secret']}  (new on every `make demo`; stored only as a hash)")
    console.print("\nGet a service token (Client Credentials):\n")
    console.print(f"  curl -s -u '{client_id}:{secret}' -d grant_type=client_credentials "
                  f"-d scope=api:read {s.issuer}/token", soft_wrap=True)
    console.print(f"  curl -s {s.issuer}/jwks", soft_wrap=True)
    print_demo_users(s.issuer, demo_users)
    console.print("\nData lives in .demo/ (delete it to start afresh). Ctrl-C stops the server.")
    console.rule()
    if not no_serve:
        _serve("127.0.0.1", port, 1, "uvicorn")


def main() -> None:
    try:
        app()
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_MODULES:
            raise
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
        err_console.print(f"[bold red]error:[/] {escape(f'ostiary {command}: {SERVER_EXTRA_HINT}')}", soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
