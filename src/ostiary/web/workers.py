"""Several Uvicorn workers, each accepting on its own listening socket (``SO_REUSEPORT``, Linux).

Uvicorn's own ``--workers`` shares one listening socket between processes; the first worker to wake takes
every connection that is waiting, so a burst of keep-alive clients (a load balancer's pool, a benchmark)
can end up on one process while the others idle. With one socket per worker the kernel spreads new
connections across the workers by a hash of their addresses instead: all connections on one worker
becomes as unlikely as a run of coin flips (2^-31 for 32 connections on 2 workers).

The parent process only supervises: it starts the workers, restarts one that dies (except when a worker
failed to start: that would fail again, so the server stops), and on SIGTERM/SIGINT/SIGHUP asks every worker to
shut down gracefully (Uvicorn finishes in-flight requests; Ostiary flushes its audit events) and waits.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from typing import Any

__all__ = ["STARTUP_FAILURE", "reuse_port_supported", "serve_uvicorn_workers"]

log = logging.getLogger("ostiary.server")

STARTUP_FAILURE = 3  # as Uvicorn: the worker could not start, so restarting it is pointless


def reuse_port_supported() -> bool:
    """Linux balances connections across sockets bound with SO_REUSEPORT; other systems do not."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _answers(host: str, port: int) -> bool:
    """Whether something already accepts connections on host:port (another server, an old Ostiary)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 - not a bind
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop_with_parent(parent: int) -> None:  # pragma: no cover - child
    """Linux: SIGTERM this worker when the supervisor dies, even by ``kill -9`` (which it cannot catch), so no
    worker is left serving, unsupervised, on the port. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(target: str, host: str, port: int, options: dict[str, Any],
            log_config: tuple[str, str], parent: int) -> None:  # pragma: no cover - child
    _stop_with_parent(parent)
    import uvicorn

    from .logs import configure_logging

    configure_logging(*log_config)  # before anything can print: every line of a worker is a JSON line too
    try:
        sock = _bind(host, port)
    except OSError as exc:
        log.error("worker cannot listen on %s:%d: %s", host, port, exc)
        sys.exit(STARTUP_FAILURE)
    try:
        server = uvicorn.Server(uvicorn.Config(target, factory=True, host=host, port=port, **options))
        server.run(sockets=[sock])
    except Exception:
        log.critical("worker failed", exc_info=True)
        sys.exit(1)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve_uvicorn_workers(target: str, host: str, port: int, workers: int, options: dict[str, Any],
                          *, grace: float = 15.0, log_config: tuple[str, str] = ("info", "json")) -> int:
    """Run ``workers`` Uvicorn processes until SIGTERM/SIGINT; returns the exit status for the parent."""
    if _answers(host, port):
        log.error("something already answers on %s:%d; stop it or choose another --port", host, port)
        return 1
    try:
        # Bound, never listening: holds the port against programs without SO_REUSEPORT until we exit.
        guard = _bind(host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    ctx = multiprocessing.get_context("spawn")
    stopping: list[int] = []

    def on_signal(sig: int, _frame: Any) -> None:
        stopping.append(sig)

    # SIGHUP too: a closed terminal must not kill the parent and leave its workers behind
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}

    def start() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=_worker, args=(target, host, port, options, log_config, os.getpid()),
                           name="ostiary-worker")
        proc.start()
        return proc

    status = 0
    procs = [start() for _ in range(workers)]
    try:
        while not stopping:
            time.sleep(0.2)
            for i, proc in enumerate(procs):
                if proc.is_alive() or stopping:
                    continue
                if proc.exitcode == STARTUP_FAILURE:
                    log.error("worker %s failed to start; stopping", proc.pid)
                    status = STARTUP_FAILURE
                    stopping.append(0)
                    break
                log.warning("worker %s exited with status %s; starting another", proc.pid, proc.exitcode,
                            extra={"worker_pid": proc.pid, "exit_status": proc.exitcode})
                time.sleep(0.5)  # a worker that dies at once must not spin the CPU
                procs[i] = start()
    finally:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s did not stop within %.0f s; killing it", proc.pid, grace)
                proc.kill()
                proc.join()
        guard.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
