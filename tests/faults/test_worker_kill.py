"""Issue 10.6: after a worker is killed (kill -9) under keep-alive load, the connections spread again within
seconds: connections are closed after ``server.keep_alive_max_age`` seconds (or ``keep_alive_max_requests``
requests), clients reconnect, and SO_REUSEPORT hands some of them to the replacement worker."""

from __future__ import annotations

import collections
import os
import signal
import threading

import httpx

from ..support import sockets_per_process, worker_pids
from .conftest import wait_until

CLIENTS = 16


def test_connections_rebalance_onto_the_worker_that_replaced_a_killed_one(pg_server) -> None:
    fs = pg_server(workers=2, extra_env={"OSTIARY_SERVER__KEEP_ALIVE_MAX_AGE": "2"})
    supervisor = fs.srv.procs[0].pid
    first = worker_pids(supervisor)
    assert len(first) == 2
    assert wait_until(lambda: len(sockets_per_process(fs.port, first, "0A")) == 2)  # both listen

    stop = threading.Event()
    statuses: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=fs.base_url, timeout=30,
                          limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)) as http:
            while not stop.is_set():
                try:
                    status = http.get("/healthz").status_code
                except httpx.TransportError:  # the connection was on the killed worker: reconnect
                    continue
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: sum(sockets_per_process(fs.port, first, "01").values()) >= CLIENTS)
        os.kill(first[0], signal.SIGKILL)  # its clients reconnect at once, all to the survivor

        def replacement() -> int | None:
            now = [p for p in worker_pids(supervisor) if p not in first]
            return now[0] if now and sockets_per_process(fs.port, now, "0A") else None

        assert wait_until(lambda: replacement() is not None)
        new = replacement()
        assert new is not None
        # keep-alive connections on the survivor are recycled, and some land on the replacement
        assert wait_until(lambda: sockets_per_process(fs.port, [new], "01")[new] >= 2), \
            sockets_per_process(fs.port, [first[1], new], "01")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert statuses[200] > 0
    assert not [s for s in statuses if s >= 500], statuses
