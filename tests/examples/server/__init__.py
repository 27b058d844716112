"""Tests of the reference TDM API server."""
