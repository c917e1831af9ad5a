"""Rate limits (429 + Retry-After) and failed-authentication throttling, in memory and in Redis."""

from __future__ import annotations

import httpx
import pytest

API = "https://api.example.com"


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_per_client_rate_limit_answers_429_with_retry_after(make_server, backend: str) -> None:
    env = {"OSTIARY_RATE_LIMITS__PER_CLIENT": "1", "OSTIARY_RATE_LIMITS__PER_CLIENT_BURST": "5"}
    if backend == "redis":
        env["OSTIARY_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    srv = make_server(extra_env=env)
    client = srv.create_client(audiences=[API])
    other = srv.create_client(audiences=[API])
    statuses = []
    with httpx.Client(base_url=srv.base_url) as http:
        for _ in range(12):
            r = http.post("/token", data={"grant_type": "client_credentials"},
                          auth=(client["client_id"], client["client_secret"]))
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert r.json()["error"] == "slow_down"
        assert statuses[:5] == [200] * 5
        assert 429 in statuses
        # the limit is per client: another client is unaffected
        r = http.post("/token", data={"grant_type": "client_credentials"}, auth=(other["client_id"], other["client_secret"]))
        assert r.status_code == 200
    metrics = httpx.get(srv.base_url + "/metrics").text
    assert 'ostiary_rate_limited_total{scope="client"}' in metrics


def test_repeated_failed_client_authentication_is_throttled(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_RATE_LIMITS__FAILED_AUTH_MAX": "3"})
    client = srv.create_client(audiences=[API])
    with httpx.Client(base_url=srv.base_url) as http:
        codes = [http.post("/token", data={"grant_type": "client_credentials"},
                           auth=(client["client_id"], f"guess-{i}")).status_code for i in range(5)]
        assert codes[:3] == [401, 401, 401]
        assert codes[3:] == [429, 429]
        # even the right secret waits out the lock-out from this address
        r = http.post("/token", data={"grant_type": "client_credentials"},
                      auth=(client["client_id"], client["client_secret"]))
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_per_ip_rate_limit(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_RATE_LIMITS__PER_IP": "1", "OSTIARY_RATE_LIMITS__PER_IP_BURST": "3"})
    with httpx.Client(base_url=srv.base_url) as http:
        codes = [http.post("/introspect", data={"token": "x"}).status_code for _ in range(6)]
    assert codes[:3] == [401, 401, 401] and codes[-1] == 429


def test_logs_never_contain_tokens_or_secrets(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_LOG_LEVEL": "debug"})
    client = srv.create_client(audiences=[API])
    r = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"]))
    token = r.json()["access_token"]
    httpx.post(srv.base_url + "/introspect", data={"token": token}, auth=(client["client_id"], client["client_secret"]))
    httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"}, auth=(client["client_id"], "ost_cs_wrong"))
    srv.stop()
    log = srv.log()
    assert '"token.issued"' in log and "client.auth_failed" in log  # audit events are there…
    assert client["client_secret"] not in log  # …but never a secret or token
    assert token not in log and token.split(".")[1] not in log
    assert "ost_cs_wrong" not in log
    assert srv.admin_token not in log


def test_redis_outage_fails_open_instead_of_500(make_server) -> None:
    srv = make_server(extra_env={"OSTIARY_REDIS_URL": "redis://127.0.0.1:1/0"})  # nothing listens there
    client = srv.create_client(audiences=[API])
    r = httpx.post(srv.base_url + "/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 200
    assert "Redis unavailable" in srv.log()
