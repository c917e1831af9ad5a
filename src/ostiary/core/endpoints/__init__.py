"""Endpoints: each takes a frozen request and returns a typed result or raises an ``OAuthError``."""
