"""``ostiary client …`` and ``ostiary keys …``: local administration straight against the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from .._clock import SystemClock
from .._json import loads as json_loads
from ..admin.service import AdminService, ClientCreate, ClientUpdate, client_view, key_view
from ..config import Settings
from ..store.sql import SqlStore
from ._common import console, fail, id_table, print_json, with_store

T = TypeVar("T")

client_app = typer.Typer(help="Register and manage OAuth clients.", no_args_is_help=True)
keys_app = typer.Typer(help="List, rotate and retire signing keys (no restart needed).", no_args_is_help=True)


def _with_service(fn: Callable[[AdminService], Awaitable[T]]) -> T:

    def service(s: Settings, store: SqlStore) -> Awaitable[T]:
        kek, secret_hash_key, _ = s.master_keys()
        return fn(AdminService(store, s.policy(), SystemClock(), secret_hash_key, kek))

    return with_store(service)


def _ts(v: int | None) -> str:
    return dt.datetime.fromtimestamp(v, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ") if v else "-"


def _show_client(view: dict[str, Any], secret: str | None) -> None:
    for key in ("client_id", "name", "client_type", "token_endpoint_auth_method", "id_token_signed_response_alg"):
        console.print(f"[bold]{key}[/]: {view[key]}")
    if view["admin"]:
        console.print("[bold]admin[/]: True (may call the admin API)")
    if view.get("dpop_bound_access_tokens"):
        console.print("[bold]dpop_bound_access_tokens[/]: True (every token request carries a DPoP proof)")
    if view.get("require_pushed_authorization_requests"):
        console.print("[bold]require_pushed_authorization_requests[/]: True (authorization requests go to /par)")
    for key in ("grant_types", "scopes", "audiences", "resource_audiences", "may_exchange_for", "redirect_uris"):
        if view[key]:
            console.print(f"[bold]{key}[/]: {' '.join(view[key])}")
    if secret:
        console.print(f"[bold]client_secret[/]: {secret}")
        console.print("[yellow]Store this secret now: it is shown once and kept only as a hash.[/]")


def _jwks(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json_loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read JWKS from {path}: {exc}")
    return data if isinstance(data, dict) else fail(f"{path} is not a JSON object")


@client_app.command("create")
def client_create(
    name: str = typer.Option(..., "--name", help="Display name, shown to users on consent pages."),
    client_id: str | None = typer.Option(None, "--client-id", help="Choose the id (default: random)."),
    public: bool = typer.Option(False, "--public", help="A public client (SPA, mobile, CLI): no secret."),
    auth_method: str | None = typer.Option(None, "--auth-method",
                                           help="client_secret_basic (default), client_secret_post, "
                                                "private_key_jwt, tls_client_auth (with one --tls-… name), "
                                                "self_signed_tls_client_auth (with --jwks or --jwks-uri), none"),
    grant_type: list[str] = typer.Option(["client_credentials"], "--grant-type",
                                         help="Allowed grant (repeat). Default: client_credentials."),
    scope: list[str] = typer.Option([], "--scope", help="Allowed scope (repeat, or space-separated)."),
    audience: list[str] = typer.Option([], "--audience",
                                       help="Allowed audience/resource URI (repeat); the first is the default aud."),
    serves: list[str] = typer.Option([], "--serves",
                                     help="Audience this client serves as a resource server (may introspect)."),
    may_exchange_for: list[str] = typer.Option(
        [], "--may-exchange-for", help="Audience for which this client may exchange the user tokens it receives "
                                       "(RFC 8693; repeat; needs the token-exchange grant)."),
    redirect_uri: list[str] = typer.Option([], "--redirect-uri", help="Registered redirect URI (repeat)."),
    post_logout_redirect_uri: list[str] = typer.Option([], "--post-logout-redirect-uri",
                                                       help="Where RP-initiated logout may return (repeat)."),
    allowed_origin: list[str] = typer.Option([], "--allowed-origin",
                                             help="Browser origin allowed by CORS, e.g. https://app.example.com."),
    first_party: bool = typer.Option(False, "--first-party", help="Your own app: users are not asked to consent."),
    admin: bool = typer.Option(False, "--admin",
                               help="May call the admin API with client-credentials tokens (with --scope admin "
                                    "--audience ISSUER/admin; client_credentials only)."),
    jwks_file: Path | None = typer.Option(
        None, "--jwks", help="File with the client's public JWKS (private_key_jwt keys; self_signed_tls_client_auth "
                             "certificates as x5c, or their keys)."),
    jwks_uri: str | None = typer.Option(
        None, "--jwks-uri", help="URL of the client's public JWKS, instead of --jwks (private_key_jwt, "
                                 "self_signed_tls_client_auth); refetched once when no key matches."),
    id_token_alg: str | None = typer.Option(None, "--id-token-alg",
                                            help="Algorithm of this client's ID tokens (id_token_signed_response_alg): "
                                                 "RS256 (default; in FAPI 2.0 mode keys.algorithm's), ES256 or "
                                                 "EdDSA, if the server signs with it."),
    tls_subject_dn: str | None = typer.Option(
        None, "--tls-subject-dn", help="tls_client_auth: the certificate's subject DN, RFC 4514 "
                                       "(\"CN=billing,O=Example\")."),
    tls_san_dns: str | None = typer.Option(None, "--tls-san-dns", help="tls_client_auth: a DNS name SAN instead."),
    tls_san_uri: str | None = typer.Option(None, "--tls-san-uri", help="tls_client_auth: a URI SAN instead."),
    tls_san_ip: str | None = typer.Option(None, "--tls-san-ip", help="tls_client_auth: an IP address SAN instead."),
    tls_san_email: str | None = typer.Option(None, "--tls-san-email", help="tls_client_auth: an email SAN instead."),
    cert_bound_tokens: bool = typer.Option(
        False, "--cert-bound-tokens", help="Bind access tokens to the client's TLS certificate (cnf.x5t#S256, "
                                           "RFC 8705); the client must present it on every token request."),
    require_par: bool = typer.Option(False, "--require-par",
                                     help="Its authorization requests must be pushed to /par first (RFC 9126 "
                                          "require_pushed_authorization_requests)."),
    dpop: bool | None = typer.Option(
        None, "--dpop/--no-dpop", help="Every token request must carry a DPoP proof: its tokens are DPoP-bound "
                                       "(RFC 9449 dpop_bound_access_tokens). Default: on for --public clients "
                                       "(Ostiary's client toolkit, openid-client and oidc-client-ts send proofs); "
                                       "--no-dpop for a public client that cannot."),
    dpop_nonce: bool = typer.Option(False, "--dpop-nonce", help="Its DPoP proofs must carry a server nonce "
                                                                "(RFC 9449 §8)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the secret included) for scripts."),
) -> None:
    """Register a client. A secret, if any, is printed once and stored only as a hash."""
    spec = dict(name=name, client_id=client_id, client_type="public" if public else "confidential",
                token_endpoint_auth_method=auth_method, grant_types=grant_type,
                scopes=[s for item in scope for s in item.split()], audiences=audience,
                resource_audiences=serves, may_exchange_for=may_exchange_for, redirect_uris=redirect_uri,
                jwks=_jwks(jwks_file), jwks_uri=jwks_uri,
                post_logout_redirect_uris=post_logout_redirect_uri, allowed_origins=allowed_origin,
                first_party=first_party, admin=admin, id_token_signed_response_alg=id_token_alg,
                tls_client_auth_subject_dn=tls_subject_dn, tls_client_auth_san_dns=tls_san_dns,
                tls_client_auth_san_uri=tls_san_uri, tls_client_auth_san_ip=tls_san_ip,
                tls_client_auth_san_email=tls_san_email, tls_client_certificate_bound_access_tokens=cert_bound_tokens,
                require_pushed_authorization_requests=require_par, dpop_bound_access_tokens=dpop,
                dpop_require_nonce=dpop_nonce)
    if id_token_alg is None:  # the server's default (FAPI 2.0 mode: not RS256)
        del spec["id_token_signed_response_alg"]

    async def go(svc: AdminService) -> tuple[dict[str, Any], str | None]:
        client, secret = await svc.create_client(ClientCreate.model_validate(spec))
        return client_view(client, svc.clock.now()), secret

    view, secret = _with_service(go)
    if as_json:
        print_json({**view, **({"client_secret": secret} if secret else {})})
    else:
        _show_client(view, secret)


@client_app.command("list")
def client_list(
    dynamic: bool = typer.Option(False, "--dynamic", help="Only clients that registered themselves (RFC 7591), "
                                                          "with when each was last used."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List registered clients."""
    async def go(svc: AdminService) -> list[dict[str, Any]]:
        return [client_view(c, svc.clock.now()) for c in await svc.list_clients(dynamic=True if dynamic else None)]

    views = _with_service(go)
    if as_json:
        print_json(views)
        return
    if dynamic:
        table = id_table("client_id", "name", "redirect URIs", "created", "last used", "disabled",
                         ids=[v["client_id"] for v in views])
        for v in views:
            table.add_row(v["client_id"], v["name"], " ".join(v["redirect_uris"]), _ts(v["created_at"]),
                          _ts(v["last_used_at"]), str(v["disabled"]))
        console.print(table)
        return
    table = id_table("client_id", "name", "type", "auth", "grants", "scopes", ids=[v["client_id"] for v in views])
    for v in views:
        name = v["name"] + (" (dynamic)" if v["dynamic"] else "") + (" (disabled)" if v["disabled"] else "")
        table.add_row(v["client_id"], name, v["client_type"], v["token_endpoint_auth_method"],
                      " ".join(v["grant_types"]), " ".join(v["scopes"]))
    console.print(table)


registration_token_app = typer.Typer(
    help="Initial access tokens for dynamic client registration (registration.policy = initial_access_token).",
    no_args_is_help=True)
client_app.add_typer(registration_token_app, name="registration-token")


@registration_token_app.command("create")
def registration_token_create(
    uses: int = typer.Option(1, "--uses", min=1, max=100000, help="How many clients it may register."),
    expires_in: str = typer.Option("1h", "--expires-in", help="How long it is valid: 90s, 15m, 1h, 7d."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Mint an initial access token (RFC 7591 §3). Give it to whoever registers the client: they send it as
    `Authorization: Bearer …` to POST /register. Shown once; stored only as a hash."""
    from ..admin.registration import create_initial_access_token
    from ..config import parse_duration

    try:
        seconds = int(parse_duration(expires_in))
    except ValueError as exc:
        fail(f"--expires-in: {exc}")

    def go(s: Settings, store: SqlStore) -> Awaitable[tuple[str, int]]:
        async def run() -> tuple[str, int]:
            _, secret_hash_key, _ = s.master_keys()
            token, stored, event = await create_initial_access_token(store, SystemClock(), secret_hash_key,
                                                                      uses=uses, expires_in=seconds)
            await store.record_events([event])
            return token, int(stored.expires_at)
        return run()

    token, expires_at = with_store(go)
    if as_json:
        print_json({"initial_access_token": token, "uses": uses, "expires_at": expires_at})
        return
    console.print(f"[bold]initial_access_token[/]: {token}")
    console.print(f"registers up to {uses} client(s) until {_ts(expires_at)}")
    console.print("[yellow]Store this token now: it is shown once and kept only as a hash.[/]")


@client_app.command("disable")
def client_disable(
    client_id: str,
    enable: bool = typer.Option(False, "--enable", help="Enable it again instead."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Disable a client: every endpoint refuses it (sign-in, tokens, refresh) until enabled again."""
    async def go(svc: AdminService) -> dict[str, Any]:
        client = await svc.update_client(client_id, ClientUpdate(disabled=not enable))
        return client_view(client, svc.clock.now())

    view = _with_service(go)
    if as_json:
        print_json(view)
    else:
        console.print(f"{'enabled' if enable else 'disabled'} {client_id}")


@client_app.command("show")
def client_show(client_id: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one client (never its secret)."""
    async def go(svc: AdminService) -> dict[str, Any]:
        return client_view(await svc.get_client(client_id), svc.clock.now())

    view = _with_service(go)
    print_json(view) if as_json else _show_client(view, None)


@client_app.command("update")
def client_update(
    client_id: str,
    name: str | None = typer.Option(None, "--name"),
    grant_type: list[str] | None = typer.Option(None, "--grant-type", help="Replace the allowed grants."),
    scope: list[str] | None = typer.Option(None, "--scope", help="Replace the allowed scopes."),
    audience: list[str] | None = typer.Option(None, "--audience", help="Replace the allowed audiences."),
    serves: list[str] | None = typer.Option(None, "--serves", help="Replace the served audiences."),
    may_exchange_for: list[str] | None = typer.Option(None, "--may-exchange-for",
                                                      help="Replace the audiences it may exchange user tokens for."),
    redirect_uri: list[str] | None = typer.Option(None, "--redirect-uri", help="Replace the redirect URIs."),
    admin: bool | None = typer.Option(None, "--admin/--no-admin", help="Allow or stop admin API access."),
    id_token_alg: str | None = typer.Option(None, "--id-token-alg", help="Algorithm of this client's ID tokens."),
    tls_subject_dn: str | None = typer.Option(None, "--tls-subject-dn",
                                              help="tls_client_auth: the certificate's subject DN (RFC 4514)."),
    cert_bound_tokens: bool | None = typer.Option(
        None, "--cert-bound-tokens/--no-cert-bound-tokens",
        help="Bind access tokens to the client's TLS certificate (RFC 8705), or stop."),
    require_par: bool | None = typer.Option(None, "--require-par/--no-require-par",
                                            help="Require (or stop requiring) pushed authorization requests "
                                                 "(RFC 9126) from this client."),
    dpop: bool | None = typer.Option(None, "--dpop/--no-dpop", help="Require (or stop requiring) a DPoP proof on "
                                                                    "every token request (RFC 9449)."),
    dpop_nonce: bool | None = typer.Option(None, "--dpop-nonce/--no-dpop-nonce",
                                           help="Require (or stop requiring) server nonces in its DPoP proofs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Change a client; every option replaces the whole list it names."""
    changes = dict(
        name=name, grant_types=grant_type or None, admin=admin,
        scopes=[s for item in scope for s in item.split()] if scope else None, audiences=audience or None,
        resource_audiences=serves or None, may_exchange_for=may_exchange_for or None,
        redirect_uris=redirect_uri or None, id_token_signed_response_alg=id_token_alg,
        tls_client_auth_subject_dn=tls_subject_dn, tls_client_certificate_bound_access_tokens=cert_bound_tokens,
        require_pushed_authorization_requests=require_par, dpop_bound_access_tokens=dpop,
        dpop_require_nonce=dpop_nonce)

    async def go(svc: AdminService) -> dict[str, Any]:
        spec = ClientUpdate.model_validate(changes)
        return client_view(await svc.update_client(client_id, spec), svc.clock.now())

    view = _with_service(go)
    print_json(view) if as_json else _show_client(view, None)


@client_app.command("delete")
def client_delete(client_id: str, yes: bool = typer.Option(False, "--yes", help="Do not ask.")) -> None:
    """Delete a client. Its tokens stop working at introspection at once, and at expiry everywhere."""
    if not yes and not typer.confirm(f"Delete client {client_id}?"):
        raise typer.Exit(1)

    async def go(svc: AdminService) -> None:
        await svc.delete_client(client_id)

    _with_service(go)
    console.print(f"deleted {client_id}")


@client_app.command("rotate-secret")
def client_rotate_secret(
    client_id: str,
    overlap: str | None = typer.Option(
        None, "--overlap", help="How long old secrets stay valid (e.g. 1h; default clients.secret_overlap)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Issue a new secret. The old one keeps working for the overlap, for a zero-downtime rollout."""
    from ..config import parse_duration

    seconds = parse_duration(overlap) if overlap is not None else None

    async def go(svc: AdminService) -> tuple[dict[str, Any], str]:
        client, secret = await svc.rotate_secret(client_id, seconds)
        return client_view(client, svc.clock.now()), secret

    view, secret = _with_service(go)
    if as_json:
        print_json({**view, "client_secret": secret})
    else:
        _show_client(view, secret)
        for s in view["secrets"]:
            if s["expires_at"]:
                console.print(f"older secret valid until {_ts(s['expires_at'])}")


@keys_app.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List keys and their stage: pending, active, retired (still published) or expired."""
    async def go(svc: AdminService) -> list[dict[str, Any]]:
        return [key_view(k, svc.clock.now(), svc.policy) for k in await svc.list_keys()]

    views = _with_service(go)
    if as_json:
        print_json(views)
        return
    if not views:
        console.print("no signing keys yet: the server creates them when it first starts (`ostiary serve`)")
        return
    table = id_table("kid", "alg", "state", "created", "signs from", "retires", "unpublished",
                     ids=[v["kid"] for v in views])
    for v in views:
        table.add_row(v["kid"], v["alg"], v["state"], _ts(v["created_at"]), _ts(v["activates_at"]),
                      _ts(v["retires_at"]), _ts(v["unpublished_at"]))
    console.print(table)


@keys_app.command("rotate")
def keys_rotate(
    now: bool = typer.Option(False, "--now", help="Sign with the new key at once (emergency; skips the "
                                                  "publish delay verifiers need)."),
    alg: str | None = typer.Option(None, "--alg", help="Rotate only this algorithm's key: ES256, RS256 or EdDSA "
                                                       "(default: every signing algorithm, each on its own)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a list: one new key per algorithm)."),
) -> None:
    """Add a new key per algorithm: published now, signing after keys.publish_delay; the current key of that
    algorithm then retires."""
    async def go(svc: AdminService) -> list[dict[str, Any]]:
        return [key_view(k, svc.clock.now(), svc.policy) for k in await svc.rotate_keys(immediate=now, alg=alg)]

    views = _with_service(go)
    if as_json:
        print_json(views)
    else:
        for view in views:
            console.print(f"new key {view['kid']} ({view['alg']}) signs from {_ts(view['activates_at'])}")


@keys_app.command("retire")
def keys_retire(kid: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Stop signing with a key now; it stays in the JWKS until every token it signed has expired."""
    async def go(svc: AdminService) -> dict[str, Any]:
        return key_view(await svc.retire_key(kid), svc.clock.now(), svc.policy)

    view = _with_service(go)
    if as_json:
        print_json(view)
    else:
        console.print(f"key {kid} retired; published until {_ts(view['unpublished_at'])}")
