"""The trust-policy storage contract, on the in-memory store, SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest

from ostiary.core.federation import Condition, TrustPolicy, jti_replay_key


def _policy(**kw: object) -> TrustPolicy:
    base: dict[str, object] = dict(
        policy_id="tp-" + secrets.token_hex(4), name="n", issuer="https://ci-" + secrets.token_hex(3) + ".example.com",
        audience="https://id.example.com", subject_template="ci:{repository}",
        conditions=(Condition("repository", "eq", "acme/api"), Condition("ref", "glob", "refs/heads/*")),
        scopes=("deploy",), audiences=("https://deploy.example.com",), max_lifetime=600, max_token_age=300,
        one_time_jti=True, allowed_clients=("runner",), created_at=10.5, updated_at=11.5)
    base.update(kw)
    return TrustPolicy(**base)  # type: ignore[arg-type]


async def test_trust_policies_round_trip(store) -> None:  # type: ignore[no-untyped-def]
    p = _policy()
    assert await store.get_trust_policy(p.policy_id) is None
    await store.add_trust_policy(p)
    assert await store.get_trust_policy(p.policy_id) == p
    with pytest.raises(ValueError):
        await store.add_trust_policy(p)
    sibling = _policy(issuer=p.issuer, max_token_age=None, one_time_jti=False, allowed_clients=(), conditions=())
    await store.add_trust_policy(sibling)
    assert await store.list_trust_policies(p.issuer) == sorted([p, sibling], key=lambda x: x.policy_id)
    assert await store.list_trust_policies(p.issuer + "/") == []  # pinned exactly
    assert {p.policy_id, sibling.policy_id} <= {x.policy_id for x in await store.list_trust_policies()}
    changed = replace(p, scopes=("read",), conditions=(Condition("environment", "eq", "production"),))
    await store.update_trust_policy(changed)
    assert await store.get_trust_policy(p.policy_id) == changed
    with pytest.raises(KeyError):
        await store.update_trust_policy(_policy())
    assert await store.delete_trust_policy(p.policy_id) is True
    assert await store.delete_trust_policy(p.policy_id) is False
    assert await store.list_trust_policies(p.issuer) == [sibling]


async def test_replay_seen_reads_without_consuming(store) -> None:  # type: ignore[no-untyped-def]
    ns, value = jti_replay_key("https://ci.example.com", secrets.token_hex(8))
    assert await store.replay_seen(ns, value, 100.0) is False
    assert await store.use_once(ns, value, 200.0, 100.0) is True
    assert await store.replay_seen(ns, value, 150.0) is True
    assert await store.replay_seen(ns, value, 200.0) is False  # expired
    assert await store.use_once(ns, value, 300.0, 150.0) is False
