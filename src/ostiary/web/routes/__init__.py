"""Routes, grouped by protocol."""
