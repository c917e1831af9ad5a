"""The protocol engine: OAuth 2.1 and OpenID Connect rules, and nothing else.

It imports the standard library, :mod:`ostiary.core.jose` (the JOSE/crypto wrapper),
:mod:`ostiary._clock` and :mod:`ostiary._secrets`; storage, keys, clock and policy are passed in.
"""
