"""Sign-in, without a web framework: passwords, second factors (TOTP and recovery codes) and the throttle on
guesses (:mod:`ostiary.signin.authn`).

Beside ``admin`` (services over core), not in ``core``: it checks passwords with argon2 and TOTP codes with
pyotp (the server's dependencies, through :mod:`ostiary._passwords`), and it is account policy rather than
OAuth rules. It imports no framework, no SQL, no settings and no wall clock: the store, the attempt limiter
(:class:`ostiary.core.ratelimit.AttemptLimiter`), the password-hashing pool and the clock are passed in.
"""

from .authn import Authenticator, Outcome, PasswordVerifier, SignInLimits, SignInResult, SignInStore

__all__ = ["Authenticator", "Outcome", "PasswordVerifier", "SignInLimits", "SignInResult", "SignInStore"]
