"""Trust policies (workload identity federation) for the in-memory store."""

from __future__ import annotations

from ..core.federation import TrustPolicy

__all__ = ["MemoryFederationMixin"]


class MemoryFederationMixin:
    """Mixed into :class:`~ostiary.store.memory.MemoryStore`; implements ``TrustPolicyRepository``."""

    replay: dict[tuple[str, str], float]  # the store's replay cache (``use_once``)

    @property
    def _trust_policies(self) -> dict[str, TrustPolicy]:
        found: dict[str, TrustPolicy] | None = self.__dict__.get("_trust_policy_map")
        if found is None:
            found = self.__dict__["_trust_policy_map"] = {}
        return found

    async def get_trust_policy(self, policy_id: str) -> TrustPolicy | None:
        return self._trust_policies.get(policy_id)

    async def list_trust_policies(self, issuer: str | None = None) -> list[TrustPolicy]:
        return sorted((p for p in self._trust_policies.values() if issuer is None or p.issuer == issuer),
                      key=lambda p: p.policy_id)

    async def add_trust_policy(self, policy: TrustPolicy) -> None:
        if policy.policy_id in self._trust_policies:
            raise ValueError(f"trust policy {policy.policy_id!r} exists")
        self._trust_policies[policy.policy_id] = policy

    async def update_trust_policy(self, policy: TrustPolicy) -> None:
        if policy.policy_id not in self._trust_policies:
            raise KeyError(policy.policy_id)
        self._trust_policies[policy.policy_id] = policy

    async def delete_trust_policy(self, policy_id: str) -> bool:
        return self._trust_policies.pop(policy_id, None) is not None

    async def replay_seen(self, namespace: str, value: str, now: float) -> bool:
        exp = self.replay.get((namespace, value))
        return exp is not None and exp > now
