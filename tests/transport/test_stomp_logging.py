"""stomp.py's DEBUG log never carries the broker password once the STOMP backend is imported."""

from __future__ import annotations

import logging

import pytest

from tdm_messaging.transport.stomp.passcode import PasscodeFilter, install_passcode_filter


def test_a_stomp_12_connect_frame_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    install_passcode_filter()
    install_passcode_filter()  # idempotent
    logger = logging.getLogger("stomp.py")
    assert sum(isinstance(f, PasscodeFilter) for f in logger.filters) == 1
    frame = [b"STOMP", b"\n", b"login:guest\n", b"passcode:s3cr3t-Pw\n", b"\n", b"\x00"]
    with caplog.at_level(logging.DEBUG, logger="stomp.py"):
        logger.debug("sending frame: %s", frame)
    assert "s3cr3t" not in caplog.text
    assert "passcode:***" in caplog.text
    assert "login:guest" in caplog.text


def test_other_records_pass_untouched() -> None:
    record = logging.LogRecord("stomp.py", logging.DEBUG, __file__, 1, "received %s", ("MESSAGE",), None)
    assert PasscodeFilter().filter(record)
    assert record.getMessage() == "received MESSAGE"


def test_the_backend_installs_it() -> None:
    import tdm_messaging.transport.stomp.connector  # noqa: F401

    assert any(isinstance(f, PasscodeFilter) for f in logging.getLogger("stomp.py").filters)
