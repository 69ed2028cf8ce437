"""`zoo train` throughput per family (images/s) and what each speed option changes, side by side in one run.

    python benchmarks/train_speed.py                     # 1 thread, every family
    python benchmarks/train_speed.py --threads 2 --only pixelcnn --steps 6

For made-mnist-bin, pixelcnn-mnist and var-mnist (their cards' configs and batch sizes, random weights: speed does
not depend on them) it times the step that `zoo train` runs (fit's loss module, backward, gradient clipping,
fused Adam) on synthetic batches in the dataset's format, best of --repeats:

- eager: the default;
- channels_last: model and batches in channels-last memory format (convolutions: PixelCNN, VAR's tokenizer);
- compile: the loss through torch.compile (`zoo train --compile`), timed after its warm-up steps;
- data: preparing a batch alone (indexing, dynamic binarization), to see whether loading is on the critical path;
- VAR: the frozen tokenizer's encoding of a batch alone (what training on cached tokens would save).
"""
from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> int:
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
    return 1


for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(_threads_from_argv())

import time  # noqa: E402

import torch  # noqa: E402

import zoo  # noqa: E402
from zoo.data import ImageData  # noqa: E402
from zoo.train import TrainConfig, _LossModule, _seeded, make_optimizer  # noqa: E402

FAMILIES = {"made": "made-mnist-bin", "pixelcnn": "pixelcnn-mnist", "var": "var-mnist"}


def synthetic(card, count: int) -> ImageData:
    """`count` random images in the card dataset's format (binarized datasets binarize each batch, as in training)."""
    shape = tuple(card.config.get("image_shape") or card.config["tokenizer"]["image_shape"])
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(count, *shape, generator=g) * 255).to(torch.uint8)
    labels = torch.randint(10, (count,), generator=g)
    return ImageData(card.dataset, "train", "synthetic", images, labels, tuple(str(i) for i in range(10)),
                     "benchmark", dynamic_binarization=card.dataset.endswith("-bin"))


def step_time(card, data: ImageData, steps: int, repeats: int, variant: str) -> float:
    """Seconds per training step of `variant` (best of `repeats` runs of `steps` steps, after warm-up)."""
    torch.manual_seed(0)
    model = zoo.create(card.architecture, **card.config).train()
    cfg = TrainConfig(**{k: v for k, v in card.training.items() if k in ("batch_size", "lr", "weight_decay",
                                                                          "optimizer", "grad_clip")})
    opt = make_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    fmt = torch.channels_last if variant == "channels_last" else torch.contiguous_format
    if variant == "channels_last":
        model.to(memory_format=fmt)
    loss_fn = _LossModule(model)
    if variant == "compile":
        loss_fn = torch.compile(loss_fn)
    bs = cfg.batch_size

    def step(s: int) -> None:
        gen = _seeded(0, 2, s)
        x, y = data.batch(torch.arange(s * bs, (s + 1) * bs) % len(data), generator=gen)
        x = x.contiguous(memory_format=fmt) if x.dim() == 4 else x
        loss = loss_fn(x, y if model.num_classes else None, gen, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()

    for s in range(3 if variant == "compile" else 1):  # warm-up (compilation)
        step(s)
    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        for s in range(steps):
            step(s)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def data_time(card, data: ImageData, steps: int) -> float:
    bs = int(card.training["batch_size"])
    start = time.perf_counter()
    for s in range(steps):
        data.batch(torch.arange(s * bs, (s + 1) * bs) % len(data), generator=_seeded(0, 2, s))
    return (time.perf_counter() - start) / steps


def encode_time(card, data: ImageData, steps: int) -> float:
    model = zoo.create(card.architecture, **card.config)
    bs = int(card.training["batch_size"])
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(steps):
            x, _ = data.batch(torch.arange(s * bs, (s + 1) * bs) % len(data), generator=_seeded(0, 2, s))
            model.tokenizer.encode(x)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", default="made,pixelcnn,var")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (its warm-up takes minutes)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for family in args.only.split(","):
        card = zoo.get_card(FAMILIES[family])
        bs = int(card.training["batch_size"])
        data = synthetic(card, bs * (args.steps + 3))
        variants = ["eager"] + (["channels_last"] if family in ("pixelcnn", "var") else []) + \
            ([] if args.no_compile else ["compile"])
        eager = None
        for v in variants:
            try:
                t = step_time(card, data, args.steps, args.repeats, v)
            except Exception as e:  # a variant that does not run here is reported, not fatal
                rows.append((card.id, v, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}", "", ""))
                continue
            eager = eager or t
            rows.append((card.id, v, f"{bs / t:.1f}", f"{t * 1e3:.0f} ms", f"{eager / t:.2f}x"))
            print(f"  {card.id} {v}: {bs / t:.1f} images/s ({t * 1e3:.0f} ms a step of {bs})", flush=True)
        d = data_time(card, data, args.steps)
        rows.append((card.id, "data alone", f"{bs / d:.0f}", f"{d * 1e3:.1f} ms", f"{100 * d / eager:.1f}% of a step"))
        if family == "var":  # the frozen tokenizer encodes every batch: what caching the tokens would save
            e = encode_time(card, data, args.steps)
            rows.append((card.id, "tokenizer encode alone", f"{bs / e:.0f}", f"{e * 1e3:.0f} ms",
                         f"{100 * e / eager:.1f}% of a step"))
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{args.steps} steps, best of {args.repeats}\n")
    print("| card (batch) | variant | images/s | step | vs eager |\n|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
