"""Administration: service functions shared by the CLI and the admin HTTP API."""
