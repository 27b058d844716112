"""Tests of the reference packager."""
