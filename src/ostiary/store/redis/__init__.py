"""Ephemeral state in Redis, shared by every process: rate-limit counters (:mod:`.ratelimit`), device poll
timing (:mod:`.device_poll`) and DPoP proof ids (:mod:`.dpop`), behind one connection and circuit breaker per
process (:mod:`.guard`). Each has a twin in process memory (``store/memory_ratelimit.py``,
``store/memory_device.py``, ``store/memory_dpop.py``) that answers while Redis is unavailable."""
