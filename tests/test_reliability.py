"""The reliability suite: every case of tests/reliability.py (bad input to every entry point, and faults) ends in
a clear zoo error or a correct resume with nothing lost; and fuzzing of the card parser, masks, image checks,
image folders and the safetensors reader. `python scripts/reliability_report.py` runs the same cases."""
from __future__ import annotations

import pytest

import reliability
from reliability import CASES, Shared, run_case


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    return Shared(tmp_path_factory.mktemp("reliability-shared"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_case(case, shared, tmp_path):
    outcome = run_case(case, tmp_path, shared)
    assert outcome.ok, f"{case.id}: {outcome.detail}"


def test_the_table_covers_every_entry_point():
    categories = {c.category for c in CASES}
    assert categories >= {"cards", "weights", "images", "masks", "sampling", "cli", "hub", "plugins", "faults"}
    commands = {c.name.split(":")[0] for c in CASES if c.category == "cli"}
    assert {"zoo sample", "zoo complete", "zoo eval", "zoo fid", "zoo info", "zoo train"} <= commands
    assert len({c.id for c in CASES}) == len(CASES), "two cases share a name"


def test_a_case_that_ends_wrongly_is_reported(shared, tmp_path):
    """The judge itself: a wrong class, a missing phrase, a success, a foreign exception and a loss all fail."""
    from zoo.errors import InputError, WeightsError
    Case = reliability.Case

    def raise_input(ctx):
        raise InputError("images contain NaN")

    def lost(ctx):
        raise AssertionError("the file is gone")
    bad = [Case("t", "wrong class", raise_input, WeightsError, "NaN"),
           Case("t", "missing phrase", raise_input, InputError, "shape"),
           Case("t", "no error", lambda ctx: None, InputError, "NaN"),
           Case("t", "foreign exception", lambda ctx: [][1], IndexError, ""),
           Case("t", "loss", raise_input, InputError, "NaN", after=lost)]
    for i, c in enumerate(bad):
        assert not run_case(c, tmp_path / str(i), shared).ok, c.name
    assert run_case(Case("t", "right", raise_input, InputError, "nan"), tmp_path / "ok", shared).ok


# ---- fuzz -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", reliability.FUZZ_NAMES)
def test_fuzz(name, tmp_path):
    assert set(reliability.FUZZ_NAMES) == set(reliability.fuzz_targets())
    assert reliability.run_fuzz(name, tmp_path, max_examples=300) > 0
