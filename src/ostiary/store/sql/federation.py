"""Trust policies (workload identity federation) for the SQL store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ...core.federation import Condition, TrustPolicy
from . import tables as t
from .tables_federation import trust_policies
from .unit_of_work import SqlUnitOfWork

__all__ = ["SqlFederationMixin"]


def _row(p: TrustPolicy) -> dict[str, Any]:
    return {
        "policy_id": p.policy_id, "name": p.name, "issuer": p.issuer, "audience": p.audience,
        "conditions": [c.as_dict() for c in p.conditions], "subject_template": p.subject_template,
        "scopes": list(p.scopes), "audiences": list(p.audiences), "max_lifetime": p.max_lifetime,
        "max_token_age": p.max_token_age, "one_time_jti": p.one_time_jti,
        "allowed_clients": list(p.allowed_clients), "created_at": p.created_at, "updated_at": p.updated_at,
    }


def _policy(row: Any) -> TrustPolicy:
    m = row._mapping
    return TrustPolicy(
        policy_id=m["policy_id"], name=m["name"], issuer=m["issuer"], audience=m["audience"],
        subject_template=m["subject_template"],
        conditions=tuple(Condition(c["claim"], c["op"], c["value"]) for c in m["conditions"]),
        scopes=tuple(m["scopes"]), audiences=tuple(m["audiences"]), max_lifetime=int(m["max_lifetime"]),
        max_token_age=m["max_token_age"], one_time_jti=bool(m["one_time_jti"]),
        allowed_clients=tuple(m["allowed_clients"]), created_at=m["created_at"], updated_at=m["updated_at"],
    )


class SqlFederationMixin(SqlUnitOfWork):
    """Mixed into :class:`~ostiary.store.sql.SqlStore`; implements ``TrustPolicyRepository``."""


    async def get_trust_policy(self, policy_id: str) -> TrustPolicy | None:
        async with self._read() as conn:
            row = (await conn.execute(sa.select(trust_policies)
                                      .where(trust_policies.c.policy_id == policy_id))).first()
        return _policy(row) if row else None

    async def list_trust_policies(self, issuer: str | None = None) -> list[TrustPolicy]:
        q = sa.select(trust_policies).order_by(trust_policies.c.policy_id)
        if issuer is not None:
            q = q.where(trust_policies.c.issuer == issuer)
        async with self._read() as conn:
            return [_policy(r) for r in await conn.execute(q)]

    async def add_trust_policy(self, policy: TrustPolicy) -> None:
        try:
            async with self._begin() as conn:
                await conn.execute(trust_policies.insert().values(**_row(policy)))
        except IntegrityError as exc:
            raise ValueError(f"trust policy {policy.policy_id!r} exists") from exc

    async def update_trust_policy(self, policy: TrustPolicy) -> None:
        async with self._begin() as conn:
            res = await conn.execute(trust_policies.update().where(trust_policies.c.policy_id == policy.policy_id)
                                     .values(**_row(policy)))
            if res.rowcount != 1:
                raise KeyError(policy.policy_id)

    async def delete_trust_policy(self, policy_id: str) -> bool:
        async with self._begin() as conn:
            res = await conn.execute(trust_policies.delete().where(trust_policies.c.policy_id == policy_id))
        return bool(res.rowcount)

    async def replay_seen(self, namespace: str, value: str, now: float) -> bool:
        rc = t.replay_cache
        async with self._read() as conn:
            row = (await conn.execute(sa.select(rc.c.expires_at).where(
                rc.c.namespace == namespace, rc.c.value == value, rc.c.expires_at > now))).first()
        return row is not None
