"""The ``ostiary`` command: parses arguments, calls the library, prints."""
