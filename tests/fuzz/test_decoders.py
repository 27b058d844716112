"""Issue 5, item 8: hypothesis fuzzing of every decoder; only the library's DecodeError (or a subclass) escapes."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tdm_messaging.codec import DecodeContext, decode, encode
from tdm_messaging.envelope import Envelope
from tdm_messaging.errors import DecodeError, InvalidDestinationError
from tdm_messaging.models import PackageRequest
from tdm_messaging.transport.stomp.dialect import Dialect, from_wire_name
from tdm_messaging.wire_json import decode_json
from tdm_messaging.wire_text import decode_text
from tests.faults.reliability import Row, record

SCALE = float(os.environ.get("TDM_FUZZ_SCALE", "1"))
"""Multiplies every example count (e.g. ``TDM_FUZZ_SCALE=10`` for a long soak; 1 in CI)."""
EXAMPLES = max(1, int(1500 * SCALE))
COUNTS: dict[str, int] = {}


def _settings(examples: int) -> settings:
    # No example database and no explain phase: generation is most of the cost, and a failure
    # still shrinks. Cheap strategies get many examples, rich ones fewer: 100,000+ in all.
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


FAST = _settings(1500)
BULK = 20_000
_CONTEXT = DecodeContext(docset_id="5", received_at=datetime(2024, 1, 1, tzinfo=UTC))
_SEED = encode(
    PackageRequest(
        docset_id="5",
        request_id="0190a0b0-0000-7000-8000-000000000001",
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        docset_url="http://api.test/api/docsets/5",
        reply_to="package/5",
        requested_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
)
_SEED_JSON = json.loads(_SEED.body)
_TEXT_LINES = st.sampled_from(
    ["Accepted. 45 seconds", "Complete: https://b.test/p/5", "Size: 345345", "Failed: no", "Progress: 50%", ""]
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
_content_types = st.sampled_from(
    ["application/json", "text/plain", "", "text/plain; charset=latin-1", "application/x+json", "image/png"]
) | st.text(max_size=30)
_headers = st.dictionaries(
    st.sampled_from(["tdm-type", "tdm-docset-id", "tdm-request-id", "tdm-sequence", "tdm-timestamp", "x"]),
    st.text(max_size=30),
    max_size=4,
)


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


@FAST
@given(body=st.binary(max_size=300), content_type=_content_types, headers=_headers)
def test_codec_decode_of_any_bytes(body: bytes, content_type: str, headers: dict[str, str]) -> None:
    _count("codec.decode(bytes)")
    with contextlib.suppress(DecodeError):
        decode(Envelope(body, content_type, headers), context=_CONTEXT, max_body_bytes=256)


@FAST
@given(changes=st.dictionaries(st.sampled_from([*sorted(_SEED_JSON), "extra"]), _json_values, max_size=3))
def test_json_decoder_with_mutated_fields(changes: dict[str, object]) -> None:
    _count("wire_json.decode_json(mutated request)")
    body = json.dumps({**_SEED_JSON, **changes}, allow_nan=True).encode()
    with contextlib.suppress(DecodeError):
        decode_json(body)


@FAST
@given(value=_json_values)
def test_json_decoder_with_any_json(value: object) -> None:
    _count("wire_json.decode_json(any JSON)")
    with contextlib.suppress(DecodeError):
        decode_json(json.dumps(value, allow_nan=True).encode())


@FAST
@given(lines=st.lists(_TEXT_LINES | st.text(max_size=40), max_size=5), headers=_headers)
def test_text_decoder_with_seed_like_lines(lines: list[str], headers: dict[str, str]) -> None:
    _count("wire_text.decode_text(lines)")
    with contextlib.suppress(DecodeError):
        decode_text(
            "\n".join(lines).encode("utf-8", "surrogatepass"),
            headers,
            docset_id="5",
            request_id="",
            received_at=_CONTEXT.received_at,
        )


@FAST
@given(name=st.text(max_size=40) | st.sampled_from(["/queue/package/5", "/queue/package%2F5", "docsets/package"]))
def test_wire_name_parser(name: str) -> None:
    _count("destinations.from_wire_name")
    for dialect in Dialect:
        with contextlib.suppress(InvalidDestinationError):
            from_wire_name(name, dialect)


# -- bulk: cheap strategies, many examples -------------------------------------------------------


@_settings(BULK)
@given(body=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_bulk_codec_decode_of_raw_bytes(body: bytes, content_type: str) -> None:
    _count("bulk codec.decode(raw bytes)")
    with contextlib.suppress(DecodeError):
        decode(Envelope(body, content_type, {}), context=_CONTEXT, max_body_bytes=128)


@_settings(BULK)
@given(body=st.binary(max_size=200))
def test_bulk_json_decoder_of_raw_bytes(body: bytes) -> None:
    _count("bulk wire_json.decode_json(raw bytes)")
    with contextlib.suppress(DecodeError):
        decode_json(body)


@_settings(BULK)
@given(
    field=st.sampled_from([*sorted(_SEED_JSON), "extra"]),
    value=st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.just([]) | st.just({}),
)
def test_bulk_json_decoder_with_one_field_changed(field: str, value: object) -> None:
    _count("bulk wire_json.decode_json(one field changed)")
    with contextlib.suppress(DecodeError):
        decode_json(json.dumps({**_SEED_JSON, field: value}).encode())


@_settings(BULK)
@given(body=st.binary(max_size=120), header=st.sampled_from(["tdm-type", "tdm-sequence", "tdm-timestamp"]))
def test_bulk_text_decoder_of_raw_bytes(body: bytes, header: str) -> None:
    _count("bulk wire_text.decode_text(raw bytes)")
    with contextlib.suppress(DecodeError):
        decode_text(body, {header: body[:20].decode("latin-1")}, docset_id="5", request_id="",
                    received_at=_CONTEXT.received_at)  # fmt: skip


@_settings(BULK)
@given(name=st.text(max_size=40))
def test_bulk_wire_name_parser(name: str) -> None:
    _count("bulk destinations.from_wire_name")
    for dialect in Dialect:
        with contextlib.suppress(InvalidDestinationError):
            from_wire_name(name, dialect)


@pytest.fixture(scope="module", autouse=True)
def _row(request: pytest.FixtureRequest) -> object:
    yield None
    if COUNTS:
        total = sum(COUNTS.values())
        record(
            Row(
                id="fuzz-decoders",
                item="8 hostile input",
                done="hypothesis: random bytes/content types/headers into codec.decode; mutated and arbitrary "
                "JSON into the JSON decoder; seed-like and random lines into the text decoder; random "
                "destination names into from_wire_name",
                expected="only DecodeError (or a subclass) / InvalidDestinationError escapes; bodies over the "
                "limit refused before parsing",
                happened=f"{total} examples, "
                + ", ".join(f"{k}: {v}" for k, v in sorted(COUNTS.items()))
                + "; no other exception (run time: see the test durations; scale with TDM_FUZZ_SCALE)",
                lost=0,
                duplicates=0,
                test=f"{request.node.nodeid}::*",
            )
        )
