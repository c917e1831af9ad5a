"""Ostiary: an OAuth 2.1 + OpenID Connect authorization server and toolkits."""

__version__ = "0.1.0"
