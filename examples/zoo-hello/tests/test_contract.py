"""The plugin contract, checked by zoo's own test kit: run `pytest examples/zoo-hello/tests`."""
from __future__ import annotations

from zoo.testing import check_family
from zoo_hello.model import IndependentPixels


def test_independent_pixels_keeps_the_zoo_contract():
    report = check_family(IndependentPixels)
    assert "exact completion" in report.passed, report
