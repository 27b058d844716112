"""The one table of headers (tdm-*, traceparent): every constant is a row, every row a constant, each name once."""

from __future__ import annotations

from tdm_messaging import codec, headers, worker
from tdm_messaging.transport import expiry
from tdm_messaging.transport.stomp import frames as stomp_frames


def _constants() -> dict[str, str]:
    return {name: getattr(headers, name) for name in headers.__all__ if name.isupper() and name != "HEADERS"}


def test_every_constant_is_in_the_table_once_and_named_tdm() -> None:
    rows = [row.name for row in headers.HEADERS]
    assert len(rows) == len(set(rows))
    assert set(rows) == set(_constants().values())
    trace = {headers.TRACEPARENT, headers.TRACESTATE}  # W3C's own names, as on HTTP
    assert trace == {"traceparent", "tracestate"}
    assert all(name.startswith("tdm-") and name == name.lower() for name in rows if name not in trace)
    assert all(row.set_by and row.meaning for row in headers.HEADERS)


def test_the_modules_that_write_headers_agree_with_the_table() -> None:
    assert codec.HEADER_TYPE == headers.TYPE and codec.HEADER_FORMATS == headers.FORMATS
    assert (worker.ATTEMPT_HEADER, worker.NEXT_SEQUENCE_HEADER) == (headers.ATTEMPT, headers.NEXT_SEQUENCE)
    assert expiry.EXPIRES_AT_HEADER == headers.EXPIRES_AT
    assert stomp_frames.MARKER_HEADER == headers.READ_MARKER
    assert stomp_frames.MARKER_AT_HEADER == headers.READ_MARKER_AT
    assert stomp_frames.PROBE_HEADER == headers.DECLARE_PROBE


def test_protocol_md_section_3_lists_every_header() -> None:
    """docs/protocol.md § 3 is where an implementer finds every tdm-* header (the table here is the source)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    section = text[text.index("## 3. Envelope") : text.index("## 4. Messages")]
    missing = [row.name for row in headers.HEADERS if f"| `{row.name}` |" not in section]
    assert not missing, f"docs/protocol.md § 3 lacks a table row for {missing}"


def test_protocol_md_never_points_into_the_library_source() -> None:
    """A spec is implementable without reading Python: no 'see worker.py' pointers."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    pointers = [m for m in re.findall(r"[\w./]+\.py\b", text) if not m.startswith("tests/")]
    assert pointers == []
    assert "tdm_messaging/" not in text
