#!/usr/bin/env python
"""Run every reliability case (tests/reliability.py) and the fuzz targets; print what was tried and how it ended.

    python scripts/reliability_report.py             # every case, 500 fuzz inputs per target
    python scripts/reliability_report.py --fast      # skip the slow fault cases (subprocess training runs)
    python scripts/reliability_report.py -v          # one line per case: its outcome and the error it gave

Exit status 0 when every case ended in a clear error or a correct resume, with nothing lost.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main(argv: list[str] | None = None) -> int:
    """Run the cases and fuzz targets, print counts per category, return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="skip the slow fault cases")
    ap.add_argument("--fuzz", type=int, default=500, metavar="N", help="inputs per fuzz target (0: none)")
    ap.add_argument("-k", default="", help="only cases whose category/name contains this text")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(2)
    try:  # the Hub client's retry warnings are expected here
        from huggingface_hub.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    import reliability

    cases = [c for c in reliability.CASES if args.k.lower() in c.id.lower() and not (args.fast and c.slow)]
    outcomes = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="zoo-reliability-") as tmp:
        shared = reliability.Shared(Path(tmp) / "shared")
        for i, case in enumerate(cases):
            o = reliability.run_case(case, Path(tmp) / f"case-{i}", shared)
            outcomes.append(o)
            if args.verbose or not o.ok:
                mark = "ok  " if o.ok else "FAIL"
                print(f"{mark} {case.id}  ({o.seconds:.1f} s)\n       {o.detail.splitlines()[0] if o.ok else o.detail}")
        fuzz = {}
        if args.fuzz:
            for name in reliability.FUZZ_NAMES:
                try:
                    fuzz[name] = (reliability.run_fuzz(name, Path(tmp) / "fuzz", args.fuzz), "")
                except Exception as e:  # a falsifying example: hypothesis raises it
                    fuzz[name] = (0, f"{type(e).__name__}: {e}")

    tried, good = Counter(), Counter()
    for o in outcomes:
        tried[o.case.category] += 1
        good[o.case.category] += o.ok
    print(f"\n{'category':<10} {'tried':>6} {'clear error / correct resume':>30}")
    for cat in dict.fromkeys(c.category for c in cases):
        print(f"{cat:<10} {tried[cat]:>6} {good[cat]:>30}")
    n, ok = len(outcomes), sum(o.ok for o in outcomes)
    errors = sum(o.ok and o.case.error is not None for o in outcomes)
    resumes = sum(o.ok and o.case.error is None for o in outcomes)
    print(f"{'total':<10} {n:>6} {ok:>30}")
    print(f"\n{ok}/{n} ended in a clear error or a correct resume ({errors} clear errors, {resumes} correct "
          f"resumes, recoveries or concurrent runs), nothing lost"
          + ("" if ok == n else f"; {n - ok} FAILED") + f"  [{time.time() - t0:.0f} s]")
    if fuzz:
        total = sum(c for c, _ in fuzz.values())
        bad = [f"{k}: {e}" for k, (_, e) in fuzz.items() if e]
        print(f"fuzz: {total:,} generated inputs to {len(fuzz)} parsers and loaders ("
              + ", ".join(f"{k} {c}" for k, (c, _) in fuzz.items()) + "): "
              + ("each ended in a clear error or a valid result" if not bad else "FAILED: " + "; ".join(bad)))
    if args.fast:
        print(f"(--fast: {sum(c.slow for c in reliability.CASES)} slow fault cases skipped)")
    return 0 if ok == n and not any(e for _, e in fuzz.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
