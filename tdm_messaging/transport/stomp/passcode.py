"""Keep the broker password out of stomp.py's own DEBUG log (its masking misses STOMP 1.2 frames)."""

from __future__ import annotations

import logging
import re

__all__ = ["PasscodeFilter", "install_passcode_filter"]

# stomp.py logs frames as the repr of a list of bytes: b'passcode:secret\n'. Its own mask wants a
# space after the colon, which STOMP 1.2 frames never have.
_PASSCODE = re.compile(r"passcode:[^\\'\"\s,\]]*")


class PasscodeFilter(logging.Filter):
    """Rewrites a log record whose message carries ``passcode:<value>`` to ``passcode:***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "passcode:" in message:
            record.msg = _PASSCODE.sub("passcode:***", message)
            record.args = None
        return True


def install_passcode_filter() -> None:
    """Attach :class:`PasscodeFilter` to stomp.py's logger, once."""
    logger = logging.getLogger("stomp.py")
    if not any(isinstance(f, PasscodeFilter) for f in logger.filters):
        logger.addFilter(PasscodeFilter())
