"""Storage: implementations of the Protocols declared in :mod:`ostiary.core.storage`."""
