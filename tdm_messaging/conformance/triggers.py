"""How the kit makes a server under test act: a shell command per action, or a person following printed steps."""

from __future__ import annotations

import select
import shlex
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TextIO

from tdm_messaging.errors import ConfigurationError

__all__ = ["DOCSET_PLACEHOLDER", "CallableTrigger", "ManualTrigger", "ShellTrigger", "Trigger"]

DOCSET_PLACEHOLDER = "{docset}"
"""Replaced, shell-quoted, by the docset id in a trigger command (other braces are left alone)."""

_ASK = {
    "request": "make the server request a package (a dump) of docset {docset}",
    "poll": "make the server poll docset {docset} once (e.g. GET its dump status), then press Enter",
    "delete": "make the server ask for the deletion of docset {docset}'s package",
}


class Trigger(ABC):
    """One action of the server under test: ``request``, ``poll`` or ``delete``.

    Attributes:
        action: which action.
        synchronous: whether :meth:`fire` returns only once the server has acted (a poll must be).
    """

    action: str
    synchronous: bool = True

    @abstractmethod
    def fire(self, docset_id: str) -> str | None:
        """Make the server act on ``docset_id``; return what went wrong, or ``None``."""


class ShellTrigger(Trigger):
    """Runs a shell command, e.g. ``curl -fsS -X POST http://server/api/docsets/{docset}/dump``.

    The command must return once the server has acted (for a poll: once the poll's answer came).

    Args:
        action: ``request``, ``poll`` or ``delete``.
        command: the command; ``{docset}`` is replaced by the docset id, shell-quoted.
        timeout: seconds before the command is killed.
    """

    def __init__(self, action: str, command: str, *, timeout: float = 30.0) -> None:
        if not command.strip():
            raise ConfigurationError(f"--trigger-{action} is empty; give a shell command, e.g. one running curl")
        self.action = action
        self.command = command
        self._timeout = timeout

    def fire(self, docset_id: str) -> str | None:
        command = self.command.replace(DOCSET_PLACEHOLDER, shlex.quote(docset_id))
        try:
            done = subprocess.run(  # the user's own command line, run as they wrote it
                command, shell=True, capture_output=True, timeout=self._timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return f"--trigger-{self.action} did not finish within {self._timeout:g} s: {command}"
        except OSError as exc:
            return f"--trigger-{self.action} could not be run: {exc}"
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output on stderr)"]
            return f"--trigger-{self.action} exited with status {done.returncode}: {tail[0][:300]}"
        return None


class ManualTrigger(Trigger):
    """Prints what a person must make the server do; for a poll, waits for Enter (up to ``timeout``).

    Args:
        action: ``request``, ``poll`` or ``delete``.
        timeout: seconds to wait for Enter after a poll instruction.
        prompt: where the instructions go (stderr by default).
        answers: where Enter is read from (stdin by default; must be a terminal).

    Raises:
        ConfigurationError: a poll must be confirmed and ``answers`` is not a terminal.
    """

    def __init__(
        self, action: str, *, timeout: float = 120.0, prompt: TextIO | None = None, answers: TextIO | None = None
    ) -> None:
        self.action = action
        self.synchronous = action == "poll"
        self._timeout = timeout
        self._prompt = prompt or sys.stderr
        self._answers = answers or sys.stdin
        if self.synchronous and not self._answers.isatty():
            raise ConfigurationError(
                f"no --trigger-{action} command given, and stdin is not a terminal to confirm a manual "
                f"{action} on; pass --trigger-{action} 'COMMAND {DOCSET_PLACEHOLDER}'"
            )

    def fire(self, docset_id: str) -> str | None:
        self._prompt.write(f"ACTION: {_ASK[self.action].replace(DOCSET_PLACEHOLDER, docset_id)}\n")
        self._prompt.flush()
        if not self.synchronous:
            return None
        ready, _, _ = select.select([self._answers], [], [], self._timeout)
        if not ready:
            return f"nobody confirmed the manual {self.action} within {self._timeout:g} s"
        self._answers.readline()
        return None


class CallableTrigger(Trigger):
    """Calls a function (for servers in the same process, e.g. in tests); an exception is reported, not raised."""

    def __init__(self, action: str, function: Callable[[str], object]) -> None:
        self.action = action
        self._function = function

    def fire(self, docset_id: str) -> str | None:
        try:
            self._function(docset_id)
        except Exception as exc:  # the server under test failed: a finding, not a crash of the kit
            return f"the {self.action} trigger raised {type(exc).__name__}: {exc}"
        return None
