"""Lazy expiry stamps: stamped on send, stale on read, never drop what cannot be proven stale."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.envelope import Envelope
from tdm_messaging.transport.expiry import EXPIRES_AT_HEADER, is_expired, stamp_expiry

T = st.integers(min_value=0, max_value=2**50)


@given(T, st.integers(min_value=1, max_value=2**40), T)
def test_stamp_then_check(now: int, ttl: int, later: int) -> None:
    env = stamp_expiry(Envelope(b"x", "text/plain", {"a": "b"}), now_ms=now, ttl_ms=ttl)
    assert env.headers["a"] == "b"
    assert env.body == b"x"
    assert is_expired(env.headers, now_ms=later) == (later >= now + ttl)


def test_unstamped_or_garbled_never_expires() -> None:
    assert not is_expired({}, now_ms=2**60)
    assert not is_expired({EXPIRES_AT_HEADER: "soon"}, now_ms=2**60)


def test_envelope_header_lookup_is_case_insensitive() -> None:
    env = Envelope(b"", headers={"tdm-type": "accepted"})
    assert env.header("TDM-Type") == "accepted"
    assert env.header("missing", "d") == "d"
