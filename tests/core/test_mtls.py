"""RFC 8705 rules in the core (memory store, fixed clock): certificate checks of tls_client_auth, the binding
of every grant's access tokens, and a public client's refresh tokens bound to its certificate (§4)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ostiary.admin.service import ClientUpdate
from ostiary.core import jose, mtls
from ostiary.core.endpoints.authorize import AuthorizationRequest, AuthorizeEndpoint
from ostiary.core.endpoints.token import TokenEndpoint
from ostiary.core.endpoints.userinfo import UserinfoEndpoint
from ostiary.core.errors import InvalidClient, InvalidGrant, InvalidRequest, InvalidToken
from ostiary.core.grants import default_grants

from .test_authorize import CB, VERIFIER, _params, _setup

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def _cert(cn: str, *, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None, ca: bool = False,
          sans: list[x509.GeneralName] | None = None, days: int = 30, start: datetime.datetime = NOW
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # RFC 4514 writes the RDN sequence last to first: this subject is "CN=<cn>,O=Ex"
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ex"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0].subject if issuer else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start - datetime.timedelta(days=1)).not_valid_after(start + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_chain_validity_and_names() -> None:
    root = _cert("Root", ca=True)
    inter = _cert("Intermediate", issuer=root, ca=True)
    leaf = _cert("svc", issuer=inter, sans=[x509.DNSName("svc.internal"), x509.UniformResourceIdentifier("spiffe://x/svc"),
                                           x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
                                           x509.RFC822Name("ops@Example.com")])[0]
    anchors = mtls.TrustAnchors((root[0],))
    now = NOW.timestamp()
    assert not mtls.chains_to(leaf, anchors, now)  # the intermediate is missing
    assert mtls.chains_to(leaf, anchors, now, intermediates=[inter[0]])
    assert not mtls.chains_to(leaf, anchors, now + 40 * 86400, intermediates=[inter[0]])  # expired
    assert not mtls.chains_to(leaf, mtls.TrustAnchors((_cert("Other", ca=True)[0],)), now, intermediates=[inter[0]])
    assert not mtls.chains_to(inter[0], anchors, now)  # a CA certificate is no client certificate
    N = mtls.TlsClientAuthName
    assert mtls.matches_registered_name(leaf, N(subject_dn="CN=svc,O=Ex"))
    assert mtls.matches_registered_name(leaf, N(subject_dn="CN=SVC,O=ex"))  # values compare ignoring case
    assert not mtls.matches_registered_name(leaf, N(subject_dn="O=Ex,CN=svc"))  # the order is part of a DN
    assert not mtls.matches_registered_name(leaf, N(subject_dn="CN=svc2,O=Ex"))
    assert not mtls.matches_registered_name(leaf, N(subject_dn="not a dn"))
    assert mtls.matches_registered_name(leaf, N(san_dns="SVC.internal"))
    assert mtls.matches_registered_name(leaf, N(san_uri="spiffe://x/svc"))
    assert not mtls.matches_registered_name(leaf, N(san_uri="spiffe://x/other"))
    assert mtls.matches_registered_name(leaf, N(san_ip="10.1.2.3"))
    assert not mtls.matches_registered_name(leaf, N(san_ip="10.1.2.4"))
    assert mtls.matches_registered_name(leaf, N(san_email="ops@example.COM"))
    assert not mtls.matches_registered_name(leaf, N())
    with pytest.raises(ValueError):
        mtls.parse_certificate(b"garbage")


async def _tls_client(engine, root, **spec):  # type: ignore[no-untyped-def]
    cid, _ = await engine.client(token_endpoint_auth_method="tls_client_auth",
                                 tls_client_auth_subject_dn="CN=svc,O=Ex", **spec)
    return cid


async def _token(engine, form, cert, anchors):  # type: ignore[no-untyped-def]
    ctx = replace(engine.ctx, trust_anchors=anchors)
    req = replace(engine.request("/token", form, None), client_cert=cert)
    return await TokenEndpoint(ctx, default_grants()).handle(req)


async def test_tls_client_auth_and_bound_client_credentials(engine) -> None:  # type: ignore[no-untyped-def]
    engine.clock.set(NOW.timestamp())
    root = _cert("Root", ca=True)
    anchors = mtls.TrustAnchors((root[0],))
    good = _der(_cert("svc", issuer=root)[0])
    cid = await _tls_client(engine, root, tls_client_certificate_bound_access_tokens=True)
    form = {"grant_type": "client_credentials", "client_id": cid}
    t = await _token(engine, form, good, anchors)
    _, claims = jose.decode_unverified(t.access_token)
    assert claims["cnf"] == {"x5t#S256": mtls.certificate_thumbprint(good)}
    for cert, ring in ((None, anchors), (_der(_cert("other", issuer=root)[0]), anchors),
                       (_der(_cert("svc")[0]), anchors), (good, mtls.NO_TRUST_ANCHORS), (b"junk", anchors)):
        with pytest.raises(InvalidClient):
            await _token(engine, form, cert, ring)
    engine.clock.set((NOW + datetime.timedelta(days=60)).timestamp())
    with pytest.raises(InvalidClient):  # the certificate expired
        await _token(engine, form, good, anchors)


async def test_public_client_refresh_tokens_are_bound_to_the_certificate(engine) -> None:  # type: ignore[no-untyped-def]
    engine.clock.set(NOW.timestamp())
    cid, _user, session = await _setup(engine)
    await engine.admin.update_client(cid, ClientUpdate(tls_client_certificate_bound_access_tokens=True))
    own = _der(_cert("app")[0])  # any certificate: the public client does not authenticate with it
    out = await AuthorizeEndpoint(engine.ctx).handle(AuthorizationRequest(_params(cid), session=session,
                                                                          consent="allow"))
    code = parse_qs(urlsplit(out.location()).query)["code"][0]  # type: ignore[union-attr]
    code_form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB, "code_verifier": VERIFIER,
                 "client_id": cid}
    with pytest.raises(InvalidRequest):  # bound tokens need a certificate: never an unbound token instead
        await _token(engine, code_form, None, mtls.NO_TRUST_ANCHORS)
    t = await _token(engine, code_form, own, mtls.NO_TRUST_ANCHORS)
    assert jose.decode_unverified(t.access_token)[1]["cnf"] == {"x5t#S256": mtls.certificate_thumbprint(own)}
    # the userinfo endpoint is a protected resource too (RFC 8705 §3)
    userinfo = UserinfoEndpoint(engine.ctx)
    assert (await userinfo.handle("Bearer " + t.access_token, client_cert=own))["sub"]
    for cert in (None, _der(_cert("thief")[0])):
        with pytest.raises(InvalidToken):
            await userinfo.handle("Bearer " + t.access_token, client_cert=cert)
    refresh = {"grant_type": "refresh_token", "refresh_token": t.refresh_token, "client_id": cid}
    # the client's registration no longer asks for bound tokens: the family stays bound all the same
    await engine.admin.update_client(cid, ClientUpdate(tls_client_certificate_bound_access_tokens=False))
    for cert in (None, _der(_cert("thief")[0])):
        with pytest.raises(InvalidGrant):
            await _token(engine, refresh, cert, mtls.NO_TRUST_ANCHORS)
    t2 = await _token(engine, refresh, own, mtls.NO_TRUST_ANCHORS)  # refused attempts did not spend it
    assert t2.refresh_token and t2.refresh_token != t.refresh_token


def test_admin_rules_for_tls_clients() -> None:
    from pydantic import ValidationError

    from ostiary.admin.service import ClientCreate

    base = {"name": "x", "audiences": ["https://api.example.com"]}
    with pytest.raises(ValidationError, match="exactly one"):
        ClientCreate.model_validate({**base, "token_endpoint_auth_method": "tls_client_auth"})
    with pytest.raises(ValidationError, match="exactly one"):
        ClientCreate.model_validate({**base, "token_endpoint_auth_method": "tls_client_auth",
                                     "tls_client_auth_subject_dn": "CN=a", "tls_client_auth_san_dns": "a.example"})
    with pytest.raises(ValidationError, match="only for"):
        ClientCreate.model_validate({**base, "tls_client_auth_subject_dn": "CN=a"})
    with pytest.raises(ValidationError, match="IP address"):
        ClientCreate.model_validate({**base, "token_endpoint_auth_method": "tls_client_auth",
                                     "tls_client_auth_san_ip": "not-an-ip"})
    with pytest.raises(ValidationError, match="needs --jwks or --jwks-uri"):
        ClientCreate.model_validate({**base, "token_endpoint_auth_method": "self_signed_tls_client_auth"})
    by_uri = ClientCreate.model_validate({**base, "token_endpoint_auth_method": "self_signed_tls_client_auth",
                                          "jwks_uri": "https://client.example/jwks.json"})  # RFC 8705 §2.2
    assert by_uri.jwks_uri == "https://client.example/jwks.json"
    ok = ClientCreate.model_validate({**base, "token_endpoint_auth_method": "tls_client_auth",
                                      "tls_client_auth_san_uri": "spiffe://example/svc"})
    assert ok.tls_name().san_uri == "spiffe://example/svc"


async def test_userinfo_answers_a_dpop_request_with_a_dpop_challenge_when_the_certificate_is_missing(
        engine) -> None:  # type: ignore[no-untyped-def]
    """RFC 9449 §7.1: a token bound to both a DPoP key and a certificate (RFC 8705 §3), presented with the DPoP
    scheme and a valid proof but without its certificate, is refused with the ``DPoP`` challenge of the scheme
    the request used (with ``algs``), not a ``Bearer`` one."""
    from ostiary.core.dpop import DPoPVerifier
    from ostiary.store.memory_dpop import MemoryDPoPReplayCache

    from ..web._dpop import DPoPKey

    engine.clock.set(NOW.timestamp())
    dpop = DPoPVerifier(MemoryDPoPReplayCache(clock=engine.clock.now), engine.clock, b"s" * 32)
    cid, _user, session = await _setup(engine)
    await engine.admin.update_client(cid, ClientUpdate(tls_client_certificate_bound_access_tokens=True))
    own, key = _der(_cert("app")[0]), DPoPKey()
    ctx = replace(engine.ctx, dpop=dpop)
    out = await AuthorizeEndpoint(ctx).handle(AuthorizationRequest(_params(cid), session=session, consent="allow"))
    code = parse_qs(urlsplit(out.location()).query)["code"][0]  # type: ignore[union-attr]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CB, "code_verifier": VERIFIER,
            "client_id": cid}
    req = replace(engine.request("/token", form, None), client_cert=own,
                  dpop=key.proof(engine.request("/token", form, None).endpoint, iat=int(NOW.timestamp())))
    t = await TokenEndpoint(ctx, default_grants()).handle(req)
    assert set(jose.decode_unverified(t.access_token)[1]["cnf"]) == {"x5t#S256", "jkt"}
    url = ctx.policy.issuer + "/userinfo"
    userinfo = UserinfoEndpoint(ctx)
    proof = key.proof(url, "GET", access_token=t.access_token, iat=int(NOW.timestamp()))
    with pytest.raises(InvalidToken) as refused:
        await userinfo.handle("DPoP " + t.access_token, client_cert=None, dpop=proof)
    challenge = refused.value.headers["WWW-Authenticate"]
    assert challenge.startswith('DPoP error="invalid_token"') and 'algs="' in challenge, challenge
    proof = key.proof(url, "GET", access_token=t.access_token, iat=int(NOW.timestamp()))
    assert (await userinfo.handle("DPoP " + t.access_token, client_cert=own, dpop=proof))["sub"]


def test_discovery_lists_the_mtls_methods_only_when_certificates_can_arrive() -> None:
    """RFC 8705 §2.1, §2.2, §3.3 in RFC 8414 metadata: the two methods and certificate-bound tokens only when
    client certificates reach the server (``tls_client_auth`` besides only with trust anchors); one listener
    serves every endpoint, so never ``mtls_endpoint_aliases`` (§5). FAPI 2.0 mode keeps the mTLS methods."""
    from ostiary.core.endpoints.metadata import server_metadata
    from ostiary.core.policy import ServerPolicy

    tls = {"tls_client_auth", "self_signed_tls_client_auth"}
    policy = ServerPolicy(issuer="https://login.example.com")
    off = server_metadata(policy, default_grants())
    assert not tls & set(off["token_endpoint_auth_methods_supported"])
    assert "tls_client_certificate_bound_access_tokens" not in off and "mtls_endpoint_aliases" not in off
    self_signed_only = server_metadata(policy, default_grants(), mtls=True)
    assert tls & set(self_signed_only["token_endpoint_auth_methods_supported"]) == {"self_signed_tls_client_auth"}
    on = server_metadata(policy, default_grants(), mtls=True, tls_client_auth=True)
    assert tls <= set(on["token_endpoint_auth_methods_supported"])
    assert on["tls_client_certificate_bound_access_tokens"] is True and "mtls_endpoint_aliases" not in on
    fapi2 = server_metadata(replace(policy, profile="fapi2"), default_grants(), mtls=True, tls_client_auth=True)
    assert set(fapi2["token_endpoint_auth_methods_supported"]) == {"private_key_jwt", *tls}


async def test_dynamic_mtls_registration_keeps_the_fapi2_rules(engine) -> None:  # type: ignore[no-untyped-def]
    """FAPI 2.0 mode: an mTLS client that registers itself (RFC 7591 with RFC 8705) gets the same rules as one an
    administrator creates: its ID tokens are not RS256 by default, and asking for RS256 is refused."""
    from ostiary.admin.registration import RegistrationPolicy, RegistrationService, create_initial_access_token
    from ostiary.admin.service import AdminService
    from ostiary.core.errors import InvalidClientMetadata

    policy = replace(engine.policy, profile="fapi2")
    admin = AdminService(engine.store, policy, engine.clock, engine.hash_key, engine.kek)
    service = RegistrationService(
        engine.store, admin, RegistrationPolicy("initial_access_token", frozenset({"openid"}),
                                                mtls_methods=frozenset({"tls_client_auth"})),
        engine.clock, engine.audit, engine.hash_key)
    token, _, _ = await create_initial_access_token(engine.store, engine.clock, engine.hash_key, uses=2,
                                                    expires_in=3600)
    meta = {"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=app,O=Ex", "tls_client_certificate_bound_access_tokens": True}
    reg = await service.register(meta, "Bearer " + token, None)
    assert reg["id_token_signed_response_alg"] == policy.access_token_alg != "RS256"
    assert reg["tls_client_auth_subject_dn"] == "CN=app,O=Ex" and reg["tls_client_certificate_bound_access_tokens"]
    with pytest.raises(InvalidClientMetadata, match="FAPI 2.0"):
        await service.register({**meta, "id_token_signed_response_alg": "RS256"}, "Bearer " + token, None)
    with pytest.raises(InvalidClientMetadata, match="not available"):  # only the methods discovery lists
        await service.register({**meta, "token_endpoint_auth_method": "self_signed_tls_client_auth",
                                "tls_client_auth_subject_dn": None, "jwks_uri": "https://app.example.com/jwks"},
                               "Bearer " + token, None)
