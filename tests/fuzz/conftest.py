"""Fuzz tests record their rows too: render them into docs/reliability.md at the end of the session."""

from __future__ import annotations

import pytest

from tests.faults.reliability import render


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Render the rows measured in this session (a no-op when the faults conftest already did)."""
    render()
