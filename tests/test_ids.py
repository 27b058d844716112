"""Request ids sort in creation order."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tdm_messaging.ids import new_request_id, request_id_from
from tdm_messaging.models import LEGACY_REQUEST_ID

MS = st.integers(min_value=0, max_value=(1 << 48) - 1)
ENTROPY = st.binary(min_size=10, max_size=10)


@given(MS, ENTROPY, MS, ENTROPY)
def test_ids_sort_by_time(t1: int, e1: bytes, t2: int, e2: bytes) -> None:
    a, b = request_id_from(t1, e1), request_id_from(t2, e2)
    if t1 < t2:
        assert a < b
    elif t1 > t2:
        assert a > b


@given(MS, ENTROPY)
def test_ids_are_uuid7(t: int, e: bytes) -> None:
    parsed = uuid.UUID(request_id_from(t, e))
    assert str(parsed) == request_id_from(t, e)  # the canonical spelling, as uuid writes it
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert request_id_from(t, e) > LEGACY_REQUEST_ID


def test_new_ids_are_unique_and_ordered() -> None:
    ids = [new_request_id() for _ in range(200)]
    assert len(set(ids)) == 200
    assert uuid.UUID(ids[0]).version == 7


@pytest.mark.parametrize(("ms", "entropy"), [(-1, b"0" * 10), (1 << 48, b"0" * 10), (0, b"short")])
def test_bad_inputs(ms: int, entropy: bytes) -> None:
    with pytest.raises(ValueError):
        request_id_from(ms, entropy)


def test_new_ids_strictly_increase_even_within_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    from tdm_messaging import ids

    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_700_000_000_000 * 1_000_000)
    made = [ids.new_request_id() for _ in range(500)]
    assert made == sorted(made)
    assert len(set(made)) == 500
    for value in made:
        assert uuid.UUID(value).version == 7


@given(MS, ENTROPY)
def test_successor_is_the_next_id(t: int, e: bytes) -> None:
    from tdm_messaging.ids import _successor

    current = request_id_from(t, e)
    nxt = _successor(current)
    assert nxt > current
    assert uuid.UUID(nxt).version == 7
