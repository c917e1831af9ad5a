"""Mutual-TLS client certificates (RFC 8705): reading them, their thumbprint, and the checks of the two client
authentication methods.

- ``tls_client_auth`` (§2.1): the certificate chains to one of the configured trust anchors and carries the
  one subject DN or subject alternative name the client registered (``tls_client_auth_subject_dn``,
  ``tls_client_auth_san_dns`` / ``_san_uri`` / ``_san_ip`` / ``_san_email``).
- ``self_signed_tls_client_auth`` (§2.2): the certificate is one the client registered in its JWKS (an ``x5c``
  whose first certificate is the same), or its public key is one of the registered keys.
- Certificate-bound access tokens (§3): ``cnf: {"x5t#S256": <base64url SHA-256 of the DER certificate>}``.

No framework here: the web layer hands the certificate over as DER (``EndpointRequest.client_cert``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from .._secrets import b64url, constant_time_equals
from .errors import InvalidRequest

__all__ = [
    "CNF_X5T",
    "NO_TLS_NAME",
    "NO_TRUST_ANCHORS",
    "TlsClientAuthName",
    "TrustAnchors",
    "bound_certificate_presented",
    "certificate_confirmation",
    "certificate_der",
    "certificate_thumbprint",
    "chains_to",
    "load_trust_anchors",
    "matches_registered_key",
    "matches_registered_name",
    "normalized_dn",
    "parse_certificate",
    "readable",
    "valid_at",
]

#: the confirmation member of a certificate-bound token (RFC 8705 §3.1)
CNF_X5T = "x5t#S256"
#: a certificate is a few KB; anything far larger is not one we read
MAX_CERTIFICATE_BYTES = 16 * 1024


def parse_certificate(data: bytes | str) -> x509.Certificate:
    """One X.509 certificate from DER or PEM bytes. ``ValueError`` when it is not one."""
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    if not data or len(data) > MAX_CERTIFICATE_BYTES:
        raise ValueError("no certificate, or one too large")
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def readable(cert: x509.Certificate) -> bool:
    """Whether every part the client authentication methods read can be read: ``cryptography`` loads the outer
    DER at once but parses the names, the extensions and the public key on first use, and raises then (a
    truncated or duplicated extension, a key type it does not know). A certificate that fails here
    authenticates nobody (RFC 8705 §2)."""
    try:
        cert.subject, cert.issuer, cert.extensions  # noqa: B018  (parsed, and cached, on first access)
        cert.public_key()
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType, UnsupportedAlgorithm):
        return False
    return True


def certificate_der(data: bytes | str) -> bytes:
    """The DER form of a certificate given as DER or PEM (``ValueError`` when it is neither)."""
    return parse_certificate(data).public_bytes(serialization.Encoding.DER)


def certificate_confirmation(client_cert: bytes | None) -> dict[str, str]:
    """The ``cnf`` of tokens bound to ``client_cert`` (RFC 8705 §3.1). A client registered for certificate-bound
    tokens that presents no certificate gets none at all (``invalid_request``): never an unbound token."""
    if client_cert is None:
        raise InvalidRequest("this client's tokens are bound to its TLS client certificate (RFC 8705 §3): "
                             "connect with the certificate")
    try:
        return {CNF_X5T: certificate_thumbprint(certificate_der(client_cert))}
    except ValueError as exc:
        raise InvalidRequest("the TLS client certificate cannot be read") from exc


def bound_certificate_presented(claims: Mapping[str, Any], client_cert: bytes | None) -> bool:
    """Whether a token's claims allow this request: no ``cnf.x5t#S256``, or the presented certificate has that
    thumbprint (RFC 8705 §3: a certificate-bound token without its certificate is refused)."""
    cnf = claims.get("cnf")
    if not isinstance(cnf, Mapping) or CNF_X5T not in cnf:
        return True
    if client_cert is None or not isinstance(cnf[CNF_X5T], str):
        return False
    try:
        presented = certificate_thumbprint(certificate_der(client_cert))
    except ValueError:
        return False
    return constant_time_equals(presented, cnf[CNF_X5T])


def certificate_thumbprint(der: bytes) -> str:
    """RFC 8705 §3.1 ``x5t#S256``: the base64url SHA-256 of the DER certificate, without padding."""
    return b64url(hashlib.sha256(der).digest())


@dataclass(frozen=True, slots=True)
class TlsClientAuthName:
    """What a ``tls_client_auth`` client registered (RFC 8705 §2.1.2): exactly one of these is set."""

    subject_dn: str | None = None
    san_dns: str | None = None
    san_uri: str | None = None
    san_ip: str | None = None
    san_email: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {f"tls_client_auth_{k}": v for k, v in (
            ("subject_dn", self.subject_dn), ("san_dns", self.san_dns), ("san_uri", self.san_uri),
            ("san_ip", self.san_ip), ("san_email", self.san_email)) if v is not None}

    @property
    def is_set(self) -> bool:
        return bool(self.as_dict())


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """The certificate authorities whose client certificates ``tls_client_auth`` accepts."""

    certificates: tuple[x509.Certificate, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.certificates)


NO_TLS_NAME: Final = TlsClientAuthName()
NO_TRUST_ANCHORS: Final = TrustAnchors()


def load_trust_anchors(pem: bytes) -> TrustAnchors:
    """Every certificate of a PEM bundle (``ValueError`` when it holds none)."""
    certs = tuple(x509.load_pem_x509_certificates(pem))
    return TrustAnchors(certs)


def _case_variants(name: str) -> list[str]:
    return ["".join(chars) for chars in itertools.product(*((c.lower(), c.upper()) for c in name))]


#: RFC 4514 §3's attribute type names in every spelling: they are RFC 4512 descriptors, case-insensitive
#: (RFC 4512 §1.4), where ``cryptography``'s parser knows the upper-case ones only
_DESCRIPTORS: Final[dict[str, x509.ObjectIdentifier]] = {
    variant: oid for name, oid in (
        ("CN", NameOID.COMMON_NAME), ("L", NameOID.LOCALITY_NAME), ("ST", NameOID.STATE_OR_PROVINCE_NAME),
        ("O", NameOID.ORGANIZATION_NAME), ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME), ("C", NameOID.COUNTRY_NAME),
        ("STREET", NameOID.STREET_ADDRESS), ("DC", NameOID.DOMAIN_COMPONENT), ("UID", NameOID.USER_ID))
    for variant in _case_variants(name)}


def normalized_dn(dn: str) -> str:
    """An RFC 4514 distinguished name in one canonical spelling (``ValueError`` when it is not one)."""
    return x509.Name.from_rfc4514_string(dn, _DESCRIPTORS).rfc4514_string().casefold()


def valid_at(cert: x509.Certificate, now: float, leeway: float = 0) -> bool:
    """Whether ``now`` (seconds since the epoch, from the injected clock) is within the validity period."""
    return cert.not_valid_before_utc.timestamp() - leeway <= now <= cert.not_valid_after_utc.timestamp() + leeway


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def chains_to(leaf: x509.Certificate, anchors: TrustAnchors, now: float, *,
              intermediates: Sequence[x509.Certificate] = (), leeway: float = 0, max_depth: int = 4) -> bool:
    """Whether ``leaf`` is valid now and issued by a trust anchor, directly or through ``intermediates`` (each
    a valid CA certificate). RFC 8705 §2.1: the PKI method relies on a validated certificate chain."""
    if not anchors or not valid_at(leaf, now, leeway) or _is_ca(leaf):
        return False
    current = leaf
    for _ in range(max_depth):
        for anchor in anchors.certificates:
            if current.issuer == anchor.subject and valid_at(anchor, now, leeway) and _issued_by(current, anchor):
                return True
        step = next((c for c in intermediates if current.issuer == c.subject and _is_ca(c)
                     and valid_at(c, now, leeway) and _issued_by(current, c)), None)
        if step is None:
            return False
        current = step
    return False


def _san_values(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value  # type: ignore[return-value]
    except x509.ExtensionNotFound:
        return None


def matches_registered_name(cert: x509.Certificate, name: TlsClientAuthName) -> bool:
    """RFC 8705 §2.1.2: the registered subject DN equals the certificate's subject, or the registered SAN is
    one of the certificate's subject alternative names of that type."""
    if name.subject_dn is not None:
        try:
            return normalized_dn(name.subject_dn) == cert.subject.rfc4514_string().casefold()
        except ValueError:
            return False
    san = _san_values(cert)
    if san is None:
        return False
    if name.san_dns is not None:
        return name.san_dns.casefold() in (d.casefold() for d in san.get_values_for_type(x509.DNSName))
    if name.san_uri is not None:
        return name.san_uri in san.get_values_for_type(x509.UniformResourceIdentifier)
    if name.san_ip is not None:
        try:
            wanted = ipaddress.ip_address(name.san_ip)
        except ValueError:
            return False
        return wanted in san.get_values_for_type(x509.IPAddress)
    if name.san_email is not None:
        return _email_key(name.san_email) in (_email_key(e) for e in san.get_values_for_type(x509.RFC822Name))
    return False


def _email_key(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.casefold()}"


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def matches_registered_key(cert: x509.Certificate, jwks_keys: Iterable[Mapping[str, Any]],
                           public_keys: Iterable[Any]) -> bool:
    """RFC 8705 §2.2.2: the presented certificate is the first certificate of a registered key's ``x5c``, or
    its public key is one of ``public_keys`` (the registered keys, as ``cryptography`` public keys)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    for jwk in jwks_keys:
        chain = jwk.get("x5c")
        if isinstance(chain, list) and chain and isinstance(chain[0], str):
            try:
                if base64.b64decode(chain[0], validate=True) == der:
                    return True
            except (binascii.Error, ValueError):
                continue
    presented = _spki(cert)
    for key in public_keys:
        try:
            spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        except (AttributeError, ValueError, TypeError):
            continue
        if spki == presented:
            return True
    return False
