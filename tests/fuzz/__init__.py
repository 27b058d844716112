"""Hostile-input tests: hypothesis fuzzing of every decoder and of the reference server's HTTP API."""
