"""The fold's choice of witness, as docs/status.md rule 4 states it, re-implemented on JSON values alone.

The reference below is what a team in another language would write from the docs: it sees only
the JSON bodies and the published schemas (the order of their ``properties``), never a model.
Hypothesis checks that it picks the very message the library's fold keeps, and that the rule is
total (two different messages never tie).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from tdm_messaging.asyncapi import message_schemas
from tdm_messaging.codec import encode
from tdm_messaging.models import (
    Accepted,
    Complete,
    Deleted,
    Failed,
    MessageBase,
    PackageRequest,
    Progress,
)
from tdm_messaging.status import compact, fold
from tests.strategies import docset_ids, request_ids, timestamps

SCHEMAS = message_schemas()


# -- the reference: docs/status.md rule 4, on JSON values -------------------------------------------


def _is_date_time(prop: dict[str, Any]) -> bool:
    return prop.get("format") == "date-time" or any(o.get("format") == "date-time" for o in prop.get("anyOf", []))


def _value(value: Any, prop: dict[str, Any]) -> tuple[Any, ...]:
    """null before any value; date-times as instants; arrays element by element; the rest as JSON gives them."""
    if value is None:
        return (0,)
    if _is_date_time(prop):
        return (1, datetime.fromisoformat(value))
    if isinstance(value, list):
        return (1, tuple(value))
    return (1, value)  # numbers by value, strings by code point, false < true


def reference_key(doc: dict[str, Any]) -> tuple[Any, ...]:
    """(items_done for progress, sequence, timestamp as an instant, then every field in schema order)."""
    schema = next(s for s in SCHEMAS.values() if s["properties"]["type"]["const"] == doc["type"])
    props = schema["properties"]
    head = (
        doc.get("items_done", 0) if doc["type"] == "progress" else 0,
        doc["sequence"],
        datetime.fromisoformat(doc["timestamp"]),
    )
    return head + tuple(_value(doc.get(name), prop) for name, prop in props.items())


def as_json(message: MessageBase) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode(message).body)
    return body


# -- generators: one kind, one request, many ties ---------------------------------------------------

_URLS = ["https://b.example.org/a.zip", "https://b.example.org/b.zip", "http://b.example.org/a.zip"]
_SECONDS = st.sampled_from([None, 0.0, 1.5, 30.0, 1e9])
_VERSIONS = st.sampled_from(["1.0", "1.1", "1.10", "1.9"])


@st.composite
def same_request_group(draw: DrawFn) -> list[MessageBase]:
    """2-6 messages of one kind, one docset and request, mostly sharing sequence and instant."""
    docset = draw(docset_ids())
    request_id = draw(request_ids())
    instant = draw(timestamps())
    kind = draw(st.sampled_from(["package_request", "accepted", "progress", "complete", "failed", "deleted"]))
    shared_done = draw(st.integers(0, 5))

    @st.composite
    def one(inner: DrawFn) -> MessageBase:
        # The same instant, sometimes spelled with another offset, and now and then a later one.
        moment = inner(
            st.sampled_from(
                [instant, instant.astimezone(timezone(timedelta(hours=5))), instant + timedelta(microseconds=1)]
            )
        )
        common: dict[str, Any] = {
            "protocol_version": inner(_VERSIONS),
            "docset_id": docset,
            "request_id": request_id,
            "sequence": inner(st.sampled_from([0, 1, 1, 1])),
            "timestamp": moment,
        }
        if kind == "package_request":
            formats = inner(st.lists(st.sampled_from(["meta", "txt", "Txt", "pdf"]), max_size=3))
            return PackageRequest.model_validate(
                {
                    **common,
                    "docset_url": inner(st.sampled_from(_URLS)),
                    "formats": tuple(formats),
                    "reply_to": inner(st.sampled_from([f"package/{docset}", f"ns/package/{docset}"])),
                    "requested_at": moment - timedelta(seconds=inner(st.sampled_from([0, 1, 60]))),
                }
            )
        if kind == "accepted":
            return Accepted.model_validate({**common, "estimate_seconds": inner(_SECONDS)})
        if kind == "progress":
            done = inner(st.sampled_from([shared_done, shared_done, shared_done + 1]))
            total = done + inner(st.sampled_from([0, 1, 10]))
            percent = 100.0 * done / total if total else 100.0
            return Progress.model_validate(
                {**common, "items_done": done, "items_total": total, "percent": percent, "eta_seconds": inner(_SECONDS)}
            )
        if kind == "complete":
            return Complete.model_validate(
                {
                    **common,
                    "archive_url": inner(st.sampled_from(_URLS)),
                    "size_bytes": inner(st.sampled_from([0, 9, 10, (1 << 63) - 1])),
                    "sha256": inner(st.sampled_from([None, "0" * 64, "f" * 64])),
                    "content_type": inner(st.sampled_from(["application/zip", "application/x-tar"])),
                    "url_expires_at": inner(st.sampled_from([None, instant, instant + timedelta(days=1)])),
                }
            )
        if kind == "failed":
            reason = inner(st.sampled_from(["a", "b", "é", "\U0001f600", "Z", "ab"]))
            return Failed.model_validate({**common, "reason": reason, "retryable": inner(st.booleans())})
        return Deleted.model_validate({**common, "archive_url": inner(st.sampled_from([None, *_URLS]))})

    return draw(st.lists(one(), min_size=2, max_size=6))


@settings(max_examples=400)
@given(same_request_group(), st.randoms(use_true_random=False))
def test_the_documented_tie_break_picks_the_folds_witness(group: list[MessageBase], rnd: Any) -> None:
    docset = group[0].docset_id
    shuffled = list(group)
    rnd.shuffle(shuffled)
    [witness] = compact(shuffled, docset)  # one kind, no request copy: the state keeps exactly one witness
    docs = [as_json(m) for m in group]
    expected = max(docs, key=reference_key)
    assert as_json(witness) == expected
    assert fold(shuffled, docset) == fold(group, docset)


@given(same_request_group())
def test_the_documented_rule_is_total(group: list[MessageBase]) -> None:
    """Two messages with equal keys are the same message: the rule never leaves a choice open."""
    by_key: dict[Any, dict[str, Any]] = {}
    for message in group:
        doc = as_json(message)
        key = reference_key(doc)
        if key in by_key:
            assert by_key[key] == doc
        by_key[key] = doc
