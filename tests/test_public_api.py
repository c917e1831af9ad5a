"""The public surface is deliberate: each public package's ``__all__`` is exactly what it exports, and every
``__all__`` in the tree names something that exists."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import ostiary

#: The packages other people's programs import, and what each promises. Adding a name is a decision: add it
#: here too (and to the README when it is for users).
PUBLIC: dict[str, set[str]] = {
    "ostiary.client": {
        "AccessDenied", "ClientCredentialsAuth", "ClientError", "DeviceCode", "DeviceLogin", "DiscoveryError",
        "DpopKey",
        "EncryptedFileTokenStore", "Expired", "KeyringTokenStore", "LoginCancelled", "LoginRequired",
        "NoKeyringError", "OAuthError", "ServerMetadata", "ServiceToken", "ServiceTokenClient", "StoredTokens",
        "TokenEndpointUnavailable", "TokenSession", "TokenSessionAuth", "TokenStore", "TokenStoreError",
        "adiscover", "default_token_store", "discover",
    },
    "ostiary.resource": {
        "AccessToken", "InsufficientScope", "Introspection", "InvalidRequest", "InvalidToken", "IssuerUnavailable",
        "JwksCache", "MissingToken", "ProtectedResourceMetadata", "ResourceError", "TokenVerifier", "WrongTokenKind",
        "is_service_token", "ClientCertificates", "check_certificate_binding",
        "DpopNonces", "DpopPolicy", "DpopRequest", "InvalidDpopProof", "MemoryReplayCache", "RedisReplayCache",
        "UseDpopNonce",
    },
    "ostiary.resource.starlette": {"BearerAuthMiddleware", "ProtectedResourceMetadataApp"},
    "ostiary.resource.fastapi": {"BearerError", "install", "require_scopes", "require_service", "require_token",
                                 "require_user"},
    "ostiary.resource.flask": {"require_token", "serve_metadata"},
    "ostiary.resource.mcp": {"McpTokenVerifier", "auth_settings"},
    "ostiary.audit": {
        "ApiAudit", "CHECKS", "CLIENT_KINDS", "Check", "Finding", "IssuerAudit", "MISTAKES", "QUICK_REFERENCE",
        "Recommendation", "Report", "SEVERITIES", "Severity", "audit_api", "audit_issuer", "default_user",
        "recommend", "scan_bundle", "to_sarif", "to_table",
    },
}
#: Public packages whose names are checked by the rules below but not yet pinned above (a package being written).
UNPINNED: list[str] = []


def _public_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name and name in UNPINNED:
            pytest.skip(f"{name} is not in this tree")
        raise


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_package_exports_exactly_its_promised_names(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == PUBLIC[name], (
        f"{name}.__all__ changed: added {sorted(set(module.__all__) - PUBLIC[name])}, "
        f"removed {sorted(PUBLIC[name] - set(module.__all__))}; if deliberate, update PUBLIC in this test")


@pytest.mark.parametrize("name", [*sorted(PUBLIC), *UNPINNED])
def test_public_package_all_is_complete_and_its_own(name: str) -> None:
    """``__all__`` has no duplicates; ``from package import *`` gives each name; every public attribute
    that is not a submodule is listed (nothing exported by accident); classes and functions are the package's
    own, not re-exports of a dependency."""
    module = _public_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)  # the behaviour under test
    assert set(exported) <= set(namespace)
    public = {n for n in vars(module) if not n.startswith("_") and n != "annotations"
              and not inspect.ismodule(getattr(module, n))}
    if module.__name__.count(".") == 1:  # a package's __init__ re-exports only; an adapter module may import
        assert public == set(exported), f"public but not in __all__: {sorted(public - set(exported))}"
    toolkit = ".".join(name.split(".")[:2])  # ostiary.resource for ostiary.resource.starlette
    for n in exported:
        obj = getattr(module, n)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (obj.__module__ + ".").startswith(toolkit + "."), f"{name}.{n} comes from {obj.__module__}"


def _all_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(ostiary.__path__, "ostiary."):
        if ".migrations" in info.name:  # Alembic scripts run only inside Alembic
            continue
        names.append(info.name)
    return names


def test_every_all_in_the_tree_names_what_its_module_defines() -> None:
    stale: list[str] = []
    for name in _all_modules():
        module = importlib.import_module(name)
        for n in getattr(module, "__all__", ()):
            if not hasattr(module, n):
                stale.append(f"{name}.{n}")
    assert not stale, f"names in __all__ that do not exist: {stale}"
