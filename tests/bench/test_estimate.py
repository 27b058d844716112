"""Tests of bench.estimate's pieces: its docset shapes (as the stub reads them) and the row's round."""

from __future__ import annotations

from bench.docset_stub import docset_delay_ms, docset_shape
from bench.estimate import CASES, Shape, _median, _Result
from examples.packager.estimate import PRIOR_COSTS


def test_each_case_names_its_shape_to_the_stub_and_warms_up_on_another() -> None:
    for shape, warmup in CASES:
        docset_id = shape.docset_id("m1")
        assert docset_shape(docset_id) == (shape.members, shape.text_bytes)
        assert docset_delay_ms(docset_id) == shape.delay_ms
        assert (warmup.members, warmup.text_bytes) != (shape.members, shape.text_bytes)  # another shape


def test_the_row_is_the_round_of_median_error() -> None:
    shape = Shape(10, 10)
    rounds = [
        _Result(shape, shape, estimate=e, real=10.0, cold=1.0, fixed=1.0, prior=PRIOR_COSTS, latency_ms=0.0)
        for e in (14.0, 8.0, 10.5)
    ]
    assert _median(rounds).estimate == 10.5
