#!/usr/bin/env python3
"""Pick one sampling setting of a card (guidance scale, temperature or top-p) by the FID of its samples (issue 23:
var-cifar10's guidance moved from the reference's 2.5 to 5.5, FID 71.51 -> 63.85 at n = 2,048):
`zoo eval ID --fid -n N --seed S --FLAG v` for each value (a seeded draw already measured is read back from its
saved statistics, so values measured by earlier queue jobs cost nothing), then, with --write, the lowest becomes the
card's preset.

    python scripts/pick_sampling.py var-mnist --cfg 2.5 4 5.5 --write
    python scripts/pick_sampling.py pixelcnn-mnist --temperature 1 0.95 0.9 --write

The preset's own value (or, on a card without one, the model's default: temperature 1, no top-p) is measured as
the card measures it, with no flag. A card whose preset changes loses the figures measured with its old preset
(FID, KID, cfd, class accuracy whose command neither says --no-preset nor sets the flag): measure them again with
the card's commands. On a card that had no preset, those figures measured the model's own distribution: they stay,
their commands now saying --no-preset. The pick is made on the test split: read it as the best of a few values,
not as a held-out figure.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pick_run import fid_of  # noqa: E402

#: figures of samples, which a change of the preset changes
SAMPLE_METRICS = {"fid", "kid", "cfd", "class_accuracy"}
#: the settings picked here: preset key -> (zoo eval flag, value without a preset)
KNOBS = {"cfg": ("--cfg", None), "temperature": ("--temperature", 1.0), "top_p": ("--top-p", None)}


def uses_preset(command: str, flag: str = "--cfg") -> bool:
    """Whether a card figure's command sampled with the preset's value of the setting `flag` sets."""
    words = command.split()
    return "--no-preset" not in words and flag not in words


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a bundled card's id (its card file is rewritten with --write)")
    knob = ap.add_mutually_exclusive_group(required=True)
    knob.add_argument("--cfg", type=float, nargs="+", help="guidance scales to compare (a class-conditional card)")
    knob.add_argument("--temperature", type=float, nargs="+", help="temperatures to compare")
    knob.add_argument("--top-p", dest="top_p", type=float, nargs="+", help="top-p thresholds to compare")
    ap.add_argument("-n", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="make the best value the card's preset")
    a = ap.parse_args(argv)
    key = next(k for k in KNOBS if getattr(a, k) is not None)
    flag, default = KNOBS[key]

    import zoo
    from zoo.cards import write_card

    card = zoo.get_card(a.model)
    if card.path is None:
        raise SystemExit(f"{a.model}: not a bundled card (no card file to write); nothing to pick")
    if key == "cfg" and not card.sampling:
        raise SystemExit(f"{a.model}: no [sampling] preset with a guidance scale; nothing to pick")
    preset = dict(card.sampling or {})
    now = preset.get(key, default)
    # the preset's own value is measured as the card measures it (no flag), so its saved statistics are read back
    scores = {v: fid_of(a.model, a.n, a.seed, *(() if v == now else (flag, f"{v:g}"))) for v in getattr(a, key)}
    best = min(scores, key=scores.get)
    for v, s in scores.items():
        mark = "  <- picked" if v == best else ""
        print(f"{a.model} {key} {v:g}: FID {s:.2f} (n = {a.n:,}, seed {a.seed}){mark}"
              + (f"  (the card's {'preset' if key in preset else 'default'})" if v == now else ""))
    if not a.write or best == now:
        print(f"card unchanged (preset {key} {now})" if a.write else "(--write makes the pick the card's preset)")
        return
    kept, dropped = [], []
    for m in card.metrics:
        if m.name not in SAMPLE_METRICS or not uses_preset(m.command, flag):
            kept.append(m)
        elif not preset:  # measured without any preset: the model's own distribution, which --no-preset still is
            kept.append(replace(m, command=m.command + " --no-preset"))
        else:
            dropped.append(m)
    write_card(replace(card, sampling={**preset, key: best}, metrics=kept), card.path)
    print(f"{card.path}: preset {key} {now} -> {best:g}; measure the preset's figures (again):")
    for m in dropped or [m for m in kept if m.command.endswith(" --no-preset") and m.name in SAMPLE_METRICS]:
        print(f"  {m.command.removesuffix(' --no-preset')} --write-card {card.path}")
    if dropped:
        print("dropped figures of the old preset")


if __name__ == "__main__":
    main()
