"""Codec benchmark: encode and decode of each message type, JSON and text/plain, against json.dumps/json.loads."""

from __future__ import annotations

import json
import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench import machine_description, update_section
from bench.harness import Row as HarnessRow
from tdm_messaging.codec import JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE, DecodeContext, decode, encode
from tdm_messaging.models import (
    Accepted,
    Complete,
    Deleted,
    DeleteRequest,
    Failed,
    Message,
    PackageRequest,
    Progress,
)

COMMAND = ".venv/bin/python -m bench codec"
ROUND_TRIP_GOAL_US = 10.0
RATIO_GOAL = 2.0
REPEAT = 7
TARGET_WINDOW_S = 0.02


def sample_messages() -> list[Message]:
    """One realistic message of each type (a UUIDv7 request id, a real-looking archive URL)."""
    now = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
    common = {"docset_id": "5", "request_id": "019a6f2e-8c1b-7d3e-9f40-1a2b3c4d5e6f", "timestamp": now}
    url = "https://tdm-packages.s3.amazonaws.com/package/5.zip"
    return [
        PackageRequest(
            **common,
            docset_url="http://server/api/docsets/5?fmt=meta,txt",
            reply_to="package/5",
            requested_at=now,
        ),
        Accepted(**common, sequence=1, estimate_seconds=45),
        Progress(**common, sequence=2, items_done=4, items_total=10, percent=40, eta_seconds=30),
        Complete(
            **common,
            sequence=3,
            archive_url=url,
            size_bytes=345345,
            sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            url_expires_at=now + timedelta(days=7),
        ),
        Failed(**common, sequence=3, reason="document 17: text not available", retryable=True),
        DeleteRequest(**common, archive_url=url),
        Deleted(**common, archive_url=url),
    ]


def per_call_us(*funcs: Callable[[], object]) -> list[float]:
    """Median time of one call of each function in µs.

    Each is warmed up and given a window of about 20 ms; then the windows of all of them are
    taken in turn, ``REPEAT`` rounds, so that ours and the baseline see the same load on a
    shared machine. Returns the median per function.
    """
    numbers = []
    for func in funcs:
        number, _elapsed = timeit.Timer(func).autorange()  # also the warm-up
        numbers.append(max(1, int(number * TARGET_WINDOW_S / 0.2)))
    samples: list[list[float]] = [[] for _ in funcs]
    for _round in range(REPEAT):
        for func, number, sample in zip(funcs, numbers, samples, strict=True):
            sample.append(timeit.timeit(func, number=number) / number * 1e6)
    return [statistics.median(sample) for sample in samples]


@dataclass(frozen=True)
class Row:
    """Timings of one message type in one format, and of the json baseline on the same dict."""

    kind: str
    content_type: str
    encode_us: float
    decode_us: float
    dumps_us: float
    loads_us: float

    @property
    def round_trip_us(self) -> float:
        return self.encode_us + self.decode_us

    @property
    def baseline_us(self) -> float:
        return self.dumps_us + self.loads_us

    @property
    def ratio(self) -> float:
        return self.round_trip_us / self.baseline_us

    @property
    def meets_goal(self) -> bool:
        return self.ratio <= RATIO_GOAL and self.round_trip_us <= ROUND_TRIP_GOAL_US


def measure(message: Message, content_type: str) -> Row:
    """Time ``encode``/``decode`` of ``message`` and ``json.dumps``/``json.loads`` of its JSON dict."""
    envelope = encode(message, content_type)
    context = DecodeContext(docset_id=message.docset_id)
    assert decode(envelope, context=context) == message, "round trip changed the message"
    as_dict = message.model_dump(mode="json")
    as_text = json.dumps(as_dict)
    encode_us, decode_us, dumps_us, loads_us = per_call_us(
        lambda: encode(message, content_type),
        lambda: decode(envelope, context=context),
        lambda: json.dumps(as_dict),
        lambda: json.loads(as_text),
    )
    return Row(message.type, content_type, encode_us, decode_us, dumps_us, loads_us)


def render(rows: list[Row]) -> str:
    """The Markdown table of ``rows``."""
    lines = [
        "| message | format | encode µs | json.dumps µs | decode µs | json.loads µs "
        "| round trip µs | baseline µs | ratio | goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.kind} | {row.content_type} | {row.encode_us:.2f} | {row.dumps_us:.2f} | {row.decode_us:.2f} "
            f"| {row.loads_us:.2f} | {row.round_trip_us:.2f} | {row.baseline_us:.2f} | {row.ratio:.2f}x "
            f"| {'met' if row.meets_goal else 'missed'} |"
        )
    return "\n".join(lines)


NOTES = """\
Notes on the codec figures:

- JSON is the protocol's format. Encoding is pydantic's `model_dump_json` (Rust) plus the six
  `tdm-*` headers (the timestamp's `isoformat()` is most of that cost); decoding is one
  `validate_json` pass (Rust parsing, no `json.loads` first). A second, Python parse happens only
  for bodies that fail validation (to name the problem) or come from a newer minor version.
- What still costs in JSON decoding are the models' Python validators (docset id, protocol
  version; for `package_request` also the URL, formats and `reply_to` checks), so
  `package_request` is the slowest JSON message. Since issue 14 each of those checks answers the
  common shape first (a precompiled pattern or one comparison) and hands anything else to the
  unchanged full check, so values and error texts are the same: `tests/test_fast_paths.py` holds
  every fast path equal to its full path over full Unicode and junk.
- Since branch `codecfast`, a `package_request` or `complete` JSON body as `encode_json` writes it
  (fields in order, no spaces or escapes, version 1.0) is read by one pattern whose groups are the
  models' proven forms and built by `construct_proven_whole`, skipping validate_json's Python
  validators and its UTC conversion of each date-time; any other body is validated as before
  (`tests/test_json_fast_path.py` holds the two equal over near misses). text/plain messages given
  every field are built the same way, and `format_moment` keeps each day's `YYYY-MM-DDT`.
  Measured A/B (main and `codecfast` alternated, two full runs each, machine shared): round trips
  package_request JSON 8.6-8.8 -> 7.2-7.5 µs, complete JSON 8.3-8.5 -> 7.7 µs, package_request
  text 8.4-8.5 -> 7.6-7.7 µs, progress text 8.5-8.7 -> 8.0-8.1 µs; complete text 9.4-10.0 ->
  9.2-9.5 µs is still the closest to the 10 µs bound.
- `text/plain` is the seed's interop format, not the hot path. A body as `encode_text` writes it
  is read by one precompiled pattern per form; any other spelling, and anything that reading
  would refuse, takes the unchanged line-by-line reader, so values and error texts are the same
  (`tests/test_text_fast_paths.py` holds the two equal over junk, near misses and full Unicode).
  Since branch `textfast` the fast reader also skips the model's validation where it can prove
  it: one pattern checks the writer's five common headers (docset id, request id, sequence,
  a date-time in UTC), the body's pattern holds a Complete's URL, digest and expiry in proven
  groups, and `models.construct_proven` then builds the message as `model_validate` would
  (values in field order, defaults, fields set, frozen); anything not proven is validated as
  before (`tests/test_proven.py` holds the two equal, and each proof to its validator). Encoding
  writes a date-time as its date and time halves (`isoformat()` with a time zone was twice the
  cost) and a request's `tdm-requested-at` once when it is its timestamp. Measured on this
  machine under the bench lock but loaded by others (load ~2 on 2 cores), main and `textfast`
  interleaved, best of 7 x 20,000 calls each: text/plain decode 5.3-8.0 µs -> 4.1-5.8 µs,
  encode 3.3-5.0 µs -> 2.5-3.8 µs, round trips 8.7-12.6 µs (1.7-2.3x the baseline) -> 6.8-9.2 µs
  (1.4-1.6x); two full bench runs each gave 1.70-2.41x -> 1.17-1.71x. What is left is Python's
  own cost of reading and building a message; the 10 µs bound holds with margin only on a quiet
  machine (complete and package_request are the closest).
- The machine is shared (2 cores, other engineers' test runs): single rows move by +-50 % between
  runs. Re-run on a quiet machine before reading much into a "missed" by a small margin.
"""


def summary_rows(rows: list[Row]) -> list[HarnessRow]:
    """The codec rows as rows of the combined table: our round trip against json.dumps + json.loads."""
    return [
        HarnessRow(
            what=f"codec round trip, {row.kind} ({row.content_type})",
            ours=row.round_trip_us,
            baseline=row.baseline_us,
            unit="µs",
            higher_is_better=False,
            goal=f"<= {RATIO_GOAL:g}x baseline and <= {ROUND_TRIP_GOAL_US:g} µs",
            met=row.meets_goal,
            command=COMMAND,
            baseline_name="`json.dumps` + `json.loads` of the same dict",
        )
        for row in rows
    ]


def run() -> list[HarnessRow]:
    """Run the benchmark, print the table, and write it into docs/performance.md; returns the combined-table rows."""
    rows = [measure(m, ct) for ct in (JSON_CONTENT_TYPE, TEXT_CONTENT_TYPE) for m in sample_messages()]
    table = render(rows)
    print(table)
    missed = [f"{r.kind} ({r.content_type})" for r in rows if not r.meets_goal]
    summary = (
        "Every row meets the goal."
        if not missed
        else f"Goal missed for: {', '.join(missed)} (see the notes below the table)."
    )
    section = (
        f"Command: `{COMMAND}`  \n"
        f"Machine: {machine_description()}  \n"
        f"Method: median of {REPEAT} windows of about {TARGET_WINDOW_S * 1000:.0f} ms each, after a warm-up, "
        "ours and the baseline interleaved; "
        "baseline = `json.dumps` + `json.loads` of the message's JSON dict, measured in the same run.  \n"
        f"Goal: round trip (encode + decode) at most {RATIO_GOAL:.0f}x the baseline and at most "
        f"{ROUND_TRIP_GOAL_US:.0f} µs. {summary}\n\n"
        f"{table}\n\n{NOTES}"
    )
    update_section("codec", section)
    print(summary)
    return summary_rows(rows)


def main() -> int:
    """``python -m bench codec``'s runner: :func:`run`; returns 0."""
    run()
    return 0
