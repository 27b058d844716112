"""Tests of the reference applications."""
