#!/usr/bin/env python3
"""Ship a training run as a bundled card (issue 23): the run folder's weights go into the plugin's weights folder
(float32, or with --float16 a half-precision copy, which halves the file; the model computes in float32 either
way), and its card into cards/PLUGIN/ID.toml with the new sha256. The run's test figures were measured on the
run's own weights, so they are dropped: measure the shipped weights with the commands the card will carry, e.g.

    python scripts/ship_card.py runs/queue/made-mnist --float16
    zoo eval made-mnist --nll --cfd -n 10000 --write-card cards/made/made-mnist.toml

The card keeps the run's validation figure (noted as measured before float16 storage when it was), its training
table and data; `--description` and `--sampling FILE` (a TOML [sampling] table) replace the description and the
recommended sampling settings, which otherwise come from the card being replaced.
"""
from __future__ import annotations

import argparse
import tomllib
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def comparable(run_card, old_card):
    """The run's validation figure and the shipped card's to compare it with (lower is better): the figure that
    chose the run's checkpoint (val_cfd under `select = "cfd"`, else val_nll) when the card has it at the same n,
    else val_nll at the same n. SystemExit when the card has neither: ship without --if-better after measuring."""
    select = run_card.training.get("select", "nll")
    names = ["val_cfd", "val_nll"] if select == "cfd" else ["val_nll"]
    for name in names:
        mine = next((m for m in run_card.metrics if m.name == name and m.split == "val"), None)
        theirs = next((m for m in old_card.metrics if m.name == name and m.split == "val"), None)
        if mine is not None and theirs is not None and mine.n == theirs.n:
            return mine, theirs
    raise SystemExit(f"--if-better: the shipped card {old_card.id} has no {' or '.join(names)} at the run's n to "
                     "compare with; ship without --if-better after measuring both")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a zoo train run folder holding card.toml and ID.safetensors")
    ap.add_argument("--float16", action="store_true", help="store floating tensors in half precision")
    ap.add_argument("--description", default=None)
    ap.add_argument("--sampling", default=None, help="a TOML file whose [sampling] table becomes the card's preset")
    ap.add_argument("--if-better", action="store_true",
                    help="ship only when the run's validation figure (the one that chose its checkpoint, val_cfd "
                         "or val_nll, else val_nll; at the same n) is below the shipped card's; otherwise change "
                         "nothing and exit 1")
    a = ap.parse_args()

    from safetensors.torch import load_file

    import zoo
    from zoo.cards import read_card, write_card
    from zoo.weights import save_weights

    run = Path(a.run)
    card = read_card(run / "card.toml")
    state = load_file(str(run / card.weights_file))
    if a.float16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    target_card = ROOT / "cards" / card.plugin / f"{card.id}.toml"
    old = read_card(target_card) if target_card.is_file() else None
    weights_dir = Path(zoo.get_card(card.id).weights_path()).parent if old else None
    if weights_dir is None:
        raise SystemExit(f"{card.id} is not a shipped card: add its card first so its plugin's weights folder is known")
    if a.if_better:
        mine, theirs = comparable(card, old)
        if not mine.value < theirs.value:
            raise SystemExit(f"not shipped: the run's {mine.name} {mine.value:g} is not below the shipped card's "
                             f"{theirs.value:g} (n = {mine.n})")
        print(f"the run's {mine.name} {mine.value:g} < the shipped card's {theirs.value:g} (n = {mine.n}): shipping")
    sha = save_weights(state, weights_dir / card.weights_file)
    metrics = []
    for m in card.metrics:
        if m.split != "val":
            continue  # measured on the run's weights: measure the shipped ones again
        # the command that reproduces the run: a queue's --resume after a stop is how it ran, not what it is
        cmd = m.command.replace(f"{ROOT}/", "").replace(" --resume", "")
        note = m.note + ("; measured on the float32 weights, stored as float16" if a.float16 else "")
        metrics.append(replace(m, command=cmd, note=note))
    sampling = old.sampling if old else {}
    if a.sampling:
        sampling = tomllib.loads(Path(a.sampling).read_text()).get("sampling", {})
    training = dict(card.training)
    if "init" in training:  # a warm start's source is provenance: the shipped card's recipe starts afresh
        training["run"] = {**training.get("run", {}), "init": training.pop("init")}
    if a.float16:
        training["run"] = {**training.get("run", {}), "stored": "float16"}
    new = replace(card, sha256=sha, metrics=metrics, sampling=sampling, path=None, training=training,
                  description=a.description or card.description,
                  data={k: v for k, v in card.data.items()})
    write_card(new, target_card)
    size = (weights_dir / card.weights_file).stat().st_size
    print(f"shipped {card.id}: {weights_dir / card.weights_file} ({size / 2**20:.1f} MiB, sha256 {sha[:12]}), "
          f"{target_card}; now measure it: zoo eval {card.id} --nll ... --write-card {target_card}")


if __name__ == "__main__":
    main()
