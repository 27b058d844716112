"""Tests of the benchmark harness (no timing is ever asserted)."""
