"""The thin ASGI layer: HTTP in, core request objects; core results out, HTTP responses."""
