"""A test hook: ``TDM_PACKAGER_FAULT=fetch|zip|upload|before_ack`` kills the packager (SIGKILL) at that point.

Off unless the variable is set. The reliability tests (``tests/faults/test_packager_kill.py``)
use it to crash the process at an exact point of a job, as a power cut or the OOM killer
would, and then check that the request is redelivered and completed by another packager.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Final

__all__ = ["FAULT_ENV", "POINTS", "BeforeAckKiller", "maybe_die"]

log = logging.getLogger(__name__)

FAULT_ENV: Final = "TDM_PACKAGER_FAULT"
POINTS: Final = ("fetch", "zip", "upload", "before_ack")
"""While listing the docset (after Accepted); after the first member is zipped; after the first
part is uploaded (before the upload is completed); after Complete is sent, before the ack."""


def maybe_die(point: str) -> None:
    """Kill this process with SIGKILL if ``TDM_PACKAGER_FAULT`` names ``point``; otherwise do nothing."""
    if os.environ.get(FAULT_ENV) == point:
        log.warning("fault injection: SIGKILL at %s (%s=%s)", point, FAULT_ENV, point)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class BeforeAckKiller(logging.Filter):
    """Dies at ``before_ack``: the worker logs "package job ... complete" after sending Complete, before the ack.

    Installed on the ``tdm_messaging.worker`` logger by ``app.run`` only when the hook is on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Let every record through; kill the process on the worker's completion line."""
        if str(record.msg).startswith("package job for docset %s complete"):
            maybe_die("before_ack")
        return True
