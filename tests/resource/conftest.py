from __future__ import annotations

from collections.abc import Iterator

import pytest
from _issuer import StandInIssuer

from ostiary._clock import FixedClock


@pytest.fixture(scope="session")
def _server() -> Iterator[StandInIssuer]:
    server = StandInIssuer().start()
    yield server
    server.stop()


@pytest.fixture
def issuer(_server: StandInIssuer) -> StandInIssuer:
    _server.reset()
    return _server


@pytest.fixture
def clock(issuer: StandInIssuer) -> FixedClock:
    assert isinstance(issuer.state.clock, FixedClock)
    return issuer.state.clock
