#!/usr/bin/env python3
"""Pick a class-conditional card's guidance scale by the FID of its samples (issue 23: var-cifar10's moved from
the reference's 2.5 to 5.5, FID 71.51 -> 63.85 at n = 2,048): `zoo eval ID --fid -n N --seed S --cfg s` for each
scale (a seeded draw already measured is read back from its saved statistics, so scales measured by earlier queue
jobs cost nothing), then, with --write, the lowest becomes the card's preset `cfg`.

    python scripts/pick_guidance.py var-mnist --cfg 2.5 4 5.5 --write

A card whose preset changes loses the figures measured with its old preset (FID, KID, cfd, class accuracy whose
command neither says --no-preset nor sets --cfg): measure them again with the card's commands. The pick is made
on the test split: read it as the best of a few scales, not as a held-out figure.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_run import fid_of  # noqa: E402

#: figures of samples, which a change of the preset's guidance changes
SAMPLE_METRICS = {"fid", "kid", "cfd", "class_accuracy"}


def uses_preset_guidance(command: str) -> bool:
    """Whether a card figure's command sampled with the preset's guidance scale."""
    words = command.split()
    return "--no-preset" not in words and "--cfg" not in words


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a bundled card's id (its card file is rewritten with --write)")
    ap.add_argument("--cfg", type=float, nargs="+", required=True, help="guidance scales to compare")
    ap.add_argument("-n", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="make the best scale the card's preset cfg")
    a = ap.parse_args(argv)

    import zoo
    from zoo.cards import write_card

    card = zoo.get_card(a.model)
    if card.path is None or not card.sampling:
        raise SystemExit(f"{a.model}: not a bundled card with a [sampling] preset; nothing to pick")
    now = card.sampling.get("cfg")
    # the preset's own scale is measured as the card measures it (no flag), so its saved statistics are read back
    scores = {s: fid_of(a.model, a.n, a.seed, *(() if s == now else ("--cfg", f"{s:g}"))) for s in a.cfg}
    best = min(scores, key=scores.get)
    for s, v in scores.items():
        mark = "  <- picked" if s == best else ""
        print(f"{a.model} cfg {s:g}: FID {v:.2f} (n = {a.n:,}, seed {a.seed}){mark}"
              + ("  (the card's preset)" if s == now else ""))
    if not a.write or best == now:
        print(f"card unchanged (preset cfg {now})" if a.write else "(--write makes the pick the card's preset)")
        return
    kept = [m for m in card.metrics if m.name not in SAMPLE_METRICS or not uses_preset_guidance(m.command)]
    dropped = [m for m in card.metrics if m not in kept]
    write_card(replace(card, sampling={**card.sampling, "cfg": best}, metrics=kept), card.path)
    print(f"{card.path}: preset cfg {now} -> {best:g}; dropped figures of the old preset, measure them again:")
    for m in dropped:
        print(f"  {m.command} --write-card {card.path}")


if __name__ == "__main__":
    main()
