"""Issue 11: the request models and the JSON Schemas generated from them accept exactly the same bodies.

The document's schemas are the models' own, so the laws here are the contract: a body the
document admits is taken by the server (save for the two rules the schema's description states),
and a body the document refuses is refused. Checked with two JSON Schema implementations
(``jsonschema``, Python's ``re``; ``jsonschema_rs``, Rust's ``regex``), on full Unicode.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from examples.server.bodies import CREATE_EXAMPLES, PATCH_EXAMPLES, QUERY_FIELDS, DocsetCreate, DocsetPatch
from examples.server.fields import MAX_SQLITE_INT, NOT_BLANK, WHITE_SPACE
from examples.server.openapi import build_openapi

DOCUMENT = build_openapi()
# What the model refuses although JSON Schema cannot say it; the schemas' descriptions state both.
SEMANTIC = ("is after year_to", "are both added and removed")


def validator(name: str) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator of component ``name``, resolving the document's other components."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(schema)


def rust_validator(name: str) -> Any:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # schemathesis's validator: a second regex engine
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


VALIDATORS = {model: validator(model.__name__) for model in (DocsetCreate, DocsetPatch)}

# Values at and beside every bound, of every JSON type, in every field.
TEXT = st.one_of(
    st.text(max_size=5),
    st.text(alphabet=st.sampled_from(WHITE_SPACE + "\x1c\x1f\ufeff\u200b"), max_size=4),
    st.builds(lambda n, c: c * n, st.sampled_from([0, 1, 199, 200, 201, 999, 1000, 1001]), st.sampled_from("a \u3000")),
    st.builds(lambda w, t: w + t + w, st.text(WHITE_SPACE, min_size=1, max_size=3), st.text(min_size=1, max_size=3)),
)
INTEGER = st.one_of(
    st.sampled_from([-1, 0, 1, 999, 1000, 1990, 9999, 10000, MAX_SQLITE_INT, MAX_SQLITE_INT + 1]),
    st.integers(),
)
NUMBER = st.one_of(
    st.sampled_from([1.0, 1.5, 1990.0, 1e3, -0.0, 9.3e18, 1e300]),
    st.floats(allow_nan=False, allow_infinity=False),
)
SCALAR = st.one_of(st.none(), st.booleans(), INTEGER, NUMBER, TEXT)
VALUE = st.one_of(SCALAR, st.lists(st.one_of(INTEGER, NUMBER, st.booleans(), TEXT), max_size=3), st.just([]))
CREATE_KEYS = ("name", "document_ids", *QUERY_FIELDS)
PATCH_KEYS = ("name", "add_document_ids", "remove_document_ids")


def fits(max_length: int) -> st.SearchStrategy[str]:
    """Text the rules take: full Unicode, padded with white space, up to the limit as sent."""
    core = st.text(min_size=1, max_size=8).filter(lambda t: t.strip(WHITE_SPACE) != "")
    padded = st.builds(lambda w, t: w + t + w, st.text(WHITE_SPACE, max_size=2), core)
    return st.one_of(padded, st.just("y" * max_length)).filter(lambda t: len(t) <= max_length)


ID = st.one_of(st.integers(1, MAX_SQLITE_INT), st.sampled_from([1, 2.0, MAX_SQLITE_INT]))
YEAR = st.one_of(st.integers(1000, 9999), st.sampled_from([1000, 1990.0, 9999]))
# Per field: a value of the field's rules two times in three, anything at all otherwise.
FIELDS = {
    "name": fits(200),
    "department": fits(200),
    "query": fits(1000),
    "year_from": YEAR,
    "year_to": YEAR,
    "document_ids": st.lists(ID, max_size=4),
    "add_document_ids": st.lists(ID, max_size=3),
    "remove_document_ids": st.lists(ID, max_size=3),
}


def mix(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each as likely (``st.one_of`` flattens nested unions, so big ones would win)."""
    return st.sampled_from(choices).flatmap(lambda chosen: chosen)


def bodies(keys: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Objects of the model's fields (and a stray one), each near its rules or past them; or any JSON value."""
    value = {key: mix(FIELDS[key], FIELDS[key], FIELDS[key], st.none(), VALUE) for key in keys}
    fields = st.fixed_dictionaries({}, optional=value)
    named = st.fixed_dictionaries({"name": FIELDS["name"]}, optional={k: v for k, v in value.items() if k != "name"})
    stray = st.dictionaries(st.sampled_from((*keys, "extra")), VALUE, max_size=len(keys) + 1)
    return mix(named, named, fields, fields, stray, VALUE)


def model_verdict(model: type[BaseModel], body: Any) -> str:
    """``accepted``, ``semantic`` (refused by a rule the schema cannot state) or ``refused``."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        if any(rule in str(exc) for rule in SEMANTIC):
            return "semantic"
        return "refused"
    return "accepted"


def assert_same_verdict(model: type[BaseModel], body: Any) -> None:
    schema_ok = VALIDATORS[model].is_valid(body)
    verdict = model_verdict(model, body)
    if schema_ok:
        assert verdict != "refused", f"the document admits {body!r}, but {model.__name__} refuses it"
    else:
        assert verdict == "refused", f"the document refuses {body!r}, but {model.__name__} takes it"


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(CREATE_KEYS))
@example({"name": "q", "query": "quantum"})  # the demo's body, which the hand-written document refused
@example({"name": "q", "query": "x", "document_ids": None})
@example({"name": "q", "document_ids": [1.0]})
@example({"name": "q", "document_ids": [True]})
@example({"name": "\x1c", "year_from": 2000})
@example({"name": " " * 199 + "x ", "year_to": 2000})
def test_create_schema_and_model_agree(body: Any) -> None:
    assert_same_verdict(DocsetCreate, body)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(PATCH_KEYS))
@example({"add_document_ids": [], "remove_document_ids": []})
@example({"name": None, "remove_document_ids": [2]})
@example({"add_document_ids": [1], "remove_document_ids": [1]})
def test_patch_schema_and_model_agree(body: Any) -> None:
    assert_same_verdict(DocsetPatch, body)


@pytest.mark.parametrize(
    ("model", "examples"), [(DocsetCreate, CREATE_EXAMPLES), (DocsetPatch, PATCH_EXAMPLES)], ids=["create", "patch"]
)
def test_every_example_is_valid_for_both(model: type[BaseModel], examples: dict[str, Any]) -> None:
    for name, documented in examples.items():
        body = documented["value"]
        VALIDATORS[model].validate(body)  # raises, naming the broken rule
        assert rust_validator(model.__name__).is_valid(body), name
        model.model_validate(body)


@given(st.text())
@example("\x1c")
@example("\ufeff")
@example("\x85")
def test_not_blank_is_exactly_what_stripping_leaves_something_of(value: str) -> None:
    assert (re.search(NOT_BLANK, value) is not None) == (value.strip(WHITE_SPACE) != "")
    assert rust_validator_of_pattern().is_valid(value) == (value.strip(WHITE_SPACE) != "")


def rust_validator_of_pattern() -> Any:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    return jsonschema_rs.Draft202012Validator({"type": "string", "pattern": NOT_BLANK})


def test_white_space_is_the_unicode_property() -> None:
    """The 25 White_Space characters: Python's isspace() adds U+001C..U+001F; pydantic's strip (Rust's trim) none."""
    everything = map(chr, range(sys.maxunicode + 1))
    assert {c for c in everything if c.isspace()} == set(WHITE_SPACE) | set("\x1c\x1d\x1e\x1f")
    assert len(WHITE_SPACE) == 25
    rust_strip = TypeAdapter(Annotated[str, StringConstraints(strip_whitespace=True)])
    for c in set(WHITE_SPACE) | set("\x1c\x1d\x1e\x1f\ufeff\u200b"):
        assert (rust_strip.validate_python(f"{c}x{c}") == "x") == (c in WHITE_SPACE), hex(ord(c))


def test_text_is_stored_stripped_and_measured_as_sent() -> None:
    assert DocsetCreate.model_validate({"name": "\u3000 q \n", "query": "\tquantum "}).name == "q"
    assert model_verdict(DocsetCreate, {"name": "x" * 200, "query": "q"}) == "accepted"
    assert model_verdict(DocsetCreate, {"name": " " + "x" * 200, "query": "q"}) == "refused"
    with pytest.raises(ValidationError, match="only white space"):
        DocsetCreate.model_validate({"name": "\u2028\u00a0", "query": "q"})
