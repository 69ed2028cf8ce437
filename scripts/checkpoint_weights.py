#!/usr/bin/env python3
"""Turn one checkpoint of a training run into a run folder of its own (card.toml + weights) that `zoo eval`,
`scripts/pick_run.py` and `scripts/ship_card.py` take: the raw or the averaged (--ema) weights of that step, or
with --epoch N the weights epoch N would have shipped (kept by `zoo train --keep-epochs`), and the run's card with
the validation figures recorded then (metrics.jsonl). For a run whose own choice of checkpoint is in doubt
(issue 23), e.g. the last epoch's averaged weights against an earlier epoch's:

    python scripts/checkpoint_weights.py runs/queue/pixelcnn-mnist-more --ema --out runs/queue/pixelcnn-mnist-epoch8
    python scripts/checkpoint_weights.py runs/queue/var-mnist-more2 --epoch 3 --out runs/queue/var-mnist-epoch3
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def validation_record(run: Path, *, step: int | None = None, epoch: int | None = None) -> dict:
    """The run's validation record (metrics.jsonl) at this step or epoch (the last one of a resumed run)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    key, want = ("step", step) if step is not None else ("epoch", epoch)
    val = next((r for r in reversed(records) if r.get("val") and r.get(key) == want), None)
    if val is None:
        raise SystemExit(f"{run}/metrics.jsonl has no validation at {key} {want}")
    return val


def run_card(run: Path):
    """The run's card: card.toml, which it writes at its end, or while it trains the recipe.toml it wrote at its
    start (the card it trains, without figures: a folder made from it carries no validation figure)."""
    from zoo.cards import read_card
    for name in ("card.toml", "recipe.toml"):
        if (run / name).is_file():
            return read_card(run / name)
    raise SystemExit(f"{run} holds neither card.toml nor recipe.toml: not a zoo train run folder (one from an "
                     "older zoo has only card.toml, written at its end or at a --time-limit stop)")


def write_run_folder(run: Path, state: dict, val: dict, weights: str, out: Path) -> str:
    """Write `state` as a run folder in `out`: the weights and the run's card, its validation figures those of
    `val` for the `weights` kind ("raw" or "ema"). Returns a line that says what was written."""
    from zoo.cards import write_card
    from zoo.weights import save_weights

    card = run_card(run)
    sha = save_weights(state, out / card.weights_file)
    figures = {"val_nll": val.get(f"val_{weights}", val.get("val_nll")), "val_cfd": val.get(f"val_cfd_{weights}",
                                                                                             val.get("val_cfd"))}
    metrics = []
    for m in card.metrics:
        if m.split == "val" and m.name in figures and figures[m.name] is not None:
            # the run's own wording of the figure, with this epoch in place of the one the run chose
            head = m.note.rsplit(", epoch", 1)[0] if ", epoch" in m.note else "validation figure of the shipped weights"
            kind = "averaged" if weights == "ema" else "raw"
            note = f"{head}, epoch {val.get('epoch')} (step {val['step']}; {kind} weights)"
            metrics.append(dataclasses.replace(m, value=round(float(figures[m.name]), 6), note=note))
    run_table = {**card.training.get("run", {}), "best_epoch": val.get("epoch"), "best_step": val["step"]}
    write_card(dataclasses.replace(card, sha256=sha, path=None, metrics=metrics,
                                   training={**card.training, "run": run_table}), out / "card.toml")
    return (f"{out}: the {weights} weights of step {val['step']} (epoch {val.get('epoch')}), "
            + ", ".join(f"{m.name} {m.value:g}" for m in metrics))


def epoch_folder(run: Path, epoch: int, out: Path) -> str:
    """The weights epoch `epoch` would have shipped (RUN/epochs/epoch-NNN.safetensors) as a run folder."""
    from safetensors.torch import load_file
    path = run / "epochs" / f"epoch-{epoch:03d}.safetensors"
    if not path.is_file():
        raise SystemExit(f"{path} not found: the run kept no weights of epoch {epoch} (train with --keep-epochs)")
    val = validation_record(run, epoch=epoch)
    return write_run_folder(run, load_file(str(path)), val, val.get("weights", "raw"), out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a zoo train run folder (card.toml, checkpoint-STEP.safetensors, metrics.jsonl)")
    ap.add_argument("--step", type=int, default=None, help="the checkpoint's step (default: the last one)")
    ap.add_argument("--ema", action="store_true", help="the averaged weights (a run trained with --ema)")
    ap.add_argument("--epoch", type=int, default=None,
                    help="instead of a checkpoint, the weights this epoch would have shipped (--keep-epochs)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    run, out = Path(a.run), Path(a.out)
    if a.epoch is not None:
        if a.step is not None or a.ema:
            raise SystemExit("--epoch takes the weights that epoch chose (raw or averaged): leave out --step and --ema")
        print(epoch_folder(run, a.epoch, out))
        return

    from safetensors.torch import load_file

    import zoo

    ckpts = {int(c.stem.split("-")[1]): c for c in run.glob("checkpoint-*.safetensors")}
    step = max(ckpts, default=None) if a.step is None else a.step
    if step not in ckpts:
        raise SystemExit(f"{run}: no checkpoint" + (f" of step {a.step}" if a.step is not None else ""))
    ckpt = ckpts[step]
    tensors = load_file(str(ckpt))
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if a.ema:
        names = [n for n, _ in zoo.load(str(run)).named_parameters()]  # the order the average was kept in
        if f"ema.{len(names) - 1}" not in tensors:
            raise SystemExit(f"{ckpt} holds no weight average: the run was trained without --ema")
        state.update({n: tensors[f"ema.{i}"] for i, n in enumerate(names)})
    print(write_run_folder(run, state, validation_record(run, step=step), "ema" if a.ema else "raw", out))


if __name__ == "__main__":
    main()
