"""FederationService: the rules of trust-policy administration and of explain (memory store, fixed clock, no
HTTP). More of its refusals are in tests/core/test_federation.py::test_admin_service."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ostiary.admin.federation import FederationService, TrustPolicyCreate, trust_policy_view
from ostiary.admin.service import ClientCreate, NotFound
from ostiary.core.endpoints.token import TokenEndpoint
from ostiary.core.errors import InvalidGrant
from ostiary.core.federation import TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_JWT
from ostiary.core.grants import default_grants

from ..core.conftest import ISSUER, Engine
from ..core.test_federation import CI, DEPLOY, CIPlatform


def spec(**kw: Any) -> TrustPolicyCreate:
    base: dict[str, Any] = {"name": "Deploy prod", "issuer": CI, "audience": ISSUER,
                            "conditions": [{"claim": "repository", "value": "acme/api"}],
                            "subject_template": "ci:{repository}", "audiences": [DEPLOY]}
    base.update(kw)
    return TrustPolicyCreate.model_validate(base)


def service(engine: Engine) -> FederationService:
    return FederationService(engine.store, engine.policy, engine.clock)


async def test_the_policy_id_defaults_to_a_slug_of_the_name(engine: Engine) -> None:
    svc = service(engine)
    assert (await svc.add(spec(name="Deploy: prod (EU)!"))).policy_id == "deploy-prod-eu"
    assert (await svc.add(spec(name="Deploy", policy_id="custom.id"))).policy_id == "custom.id"
    odd = await svc.add(spec(name="!!!"))
    assert odd.policy_id.startswith("tp-") and len(odd.policy_id) > 3


async def test_a_client_allowed_by_a_policy_must_exist_and_may_use_token_exchange(engine: Engine) -> None:
    deployer, _ = await engine.admin.create_client(ClientCreate.model_validate(
        {"name": "deployer", "client_id": "deployer", "grant_types": [TOKEN_EXCHANGE_GRANT]}))
    policy = await service(engine).add(spec(allowed_clients=[deployer.client_id]))
    assert policy.allowed_clients == ("deployer",)
    assert trust_policy_view(policy)["allowed_clients"] == ["deployer"]


@pytest.mark.parametrize("policy_id", ["nobody", "a b", "../x", "x" * 129])
async def test_unknown_or_malformed_ids_are_not_found(engine: Engine, policy_id: str) -> None:
    await service(engine).add(spec())
    with pytest.raises(NotFound, match="ostiary federation trust list"):
        await service(engine).get(policy_id)
    with pytest.raises(NotFound, match="ostiary federation trust list"):
        await service(engine).remove(policy_id)
    assert [p.policy_id for p in await service(engine).list_policies()] == ["deploy-prod"]


async def test_removing_twice_is_not_found_the_second_time(engine: Engine) -> None:
    await service(engine).add(spec())
    await service(engine).remove("deploy-prod")
    with pytest.raises(NotFound):
        await service(engine).remove("deploy-prod")


async def test_explain_consumes_nothing_even_for_a_one_time_token(engine: Engine) -> None:
    """Explaining a token twice leaves it usable once at POST /token: explain only looks the jti up."""
    ci = CIPlatform()
    await service(engine).add(spec(one_time_jti=True))
    token = ci.token(engine.clock.now())
    for _ in range(2):
        report = await service(engine).explain(token, ci)
        assert report.allowed and report.as_dict()["would_issue"]["policy_id"] == "deploy-prod"

    ctx = dataclasses.replace(engine.ctx, external_keys=ci)
    form = {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": token, "subject_token_type": TOKEN_TYPE_JWT}
    issued = await TokenEndpoint(ctx, default_grants()).handle(engine.request("/token", form, None))
    assert issued.access_token
    with pytest.raises(InvalidGrant):  # and once only
        await TokenEndpoint(ctx, default_grants()).handle(engine.request("/token", form, None))
    assert not (await service(engine).explain(token, ci)).allowed
