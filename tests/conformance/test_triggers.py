"""Triggers: shell commands with a quoted {docset}, their failures as findings, manual steps on a terminal."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from tdm_messaging.conformance.triggers import CallableTrigger, ManualTrigger, ShellTrigger
from tdm_messaging.errors import ConfigurationError


def test_the_docset_is_substituted_shell_quoted_and_other_braces_are_left(tmp_path: Path) -> None:
    out = tmp_path / "out"
    docset = "a~b:c@d+e-f.g_h"
    trigger = ShellTrigger("request", f"printf '%s %s' {{docset}} '{{\"json\": 1}}' > {out}")
    assert trigger.fire(docset) is None
    assert out.read_text() == f'{docset} {{"json": 1}}'


def test_a_failing_command_is_reported_with_its_status_and_last_stderr_line() -> None:
    problem = ShellTrigger("poll", "echo first >&2; echo 'server said 500' >&2; exit 22").fire("5")
    assert problem == "--trigger-poll exited with status 22: server said 500"


def test_a_hanging_command_is_killed_after_its_timeout() -> None:
    problem = ShellTrigger("delete", "sleep 5", timeout=0.2).fire("5")
    assert problem is not None and "did not finish within 0.2 s" in problem


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="--trigger-poll is empty"):
        ShellTrigger("poll", "  ")


def test_a_manual_poll_needs_a_terminal() -> None:
    with pytest.raises(ConfigurationError, match="pass --trigger-poll"):
        ManualTrigger("poll", answers=io.StringIO())


def test_a_manual_request_prints_the_step_and_does_not_wait() -> None:
    prompt = io.StringIO()
    assert ManualTrigger("request", prompt=prompt, answers=io.StringIO()).fire("42") is None
    assert prompt.getvalue() == "ACTION: make the server request a package (a dump) of docset 42\n"


def test_a_manual_poll_waits_for_enter_on_the_terminal() -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "r") as answers:
        prompt = io.StringIO()
        trigger = ManualTrigger("poll", timeout=5, prompt=prompt, answers=answers)
        os.write(master, b"\n")
        assert trigger.fire("42") is None
        assert "poll docset 42 once" in prompt.getvalue()
        assert ManualTrigger("poll", timeout=0.1, prompt=prompt, answers=answers).fire("42") == (
            "nobody confirmed the manual poll within 0.1 s"
        )
    os.close(master)


def test_a_raising_callable_is_a_finding_not_a_crash() -> None:
    def boom(docset_id: str) -> None:
        raise RuntimeError(f"no docset {docset_id}")

    assert CallableTrigger("request", boom).fire("9") == "the request trigger raised RuntimeError: no docset 9"
