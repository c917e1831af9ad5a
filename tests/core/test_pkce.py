"""RFC 7636: S256 only; appendix B's example; constant-time verification."""

from __future__ import annotations

import pytest

from ostiary.core.errors import InvalidGrant, InvalidRequest
from ostiary.core.pkce import check_code_challenge, s256_challenge, verify_code_verifier

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b() -> None:
    assert s256_challenge(VERIFIER) == CHALLENGE
    verify_code_verifier(VERIFIER, CHALLENGE)


@pytest.mark.parametrize(("challenge", "method"), [(None, "S256"), ("", "S256"), (CHALLENGE, "plain"),
                                                   (CHALLENGE, None), (CHALLENGE, "s256"), ("x" * 42, "S256"),
                                                   ("=" * 43, "S256")])
def test_bad_challenges_are_refused(challenge: str | None, method: str | None) -> None:
    with pytest.raises(InvalidRequest):
        check_code_challenge(challenge, method)


def test_wrong_or_malformed_verifier() -> None:
    with pytest.raises(InvalidGrant):
        verify_code_verifier(VERIFIER[:-1] + "N", CHALLENGE)
    with pytest.raises(InvalidGrant):
        verify_code_verifier("short", CHALLENGE)
    with pytest.raises(InvalidRequest):
        verify_code_verifier(None, CHALLENGE)
    with pytest.raises(InvalidGrant):
        verify_code_verifier(CHALLENGE, CHALLENGE)  # plain: the challenge itself is not a verifier
