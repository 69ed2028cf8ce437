"""A factorized-softmax MADE's log-probabilities chunked (zoo_made.factorized.factorized_log_prob) against the
whole logits at once (reference_log_prob, what it replaced), forward and backward, alone and inside a whole
training step (fused Adam, as `zoo train` runs it), side by side in one run; one thread by default.

    python benchmarks/made_softmax.py          # the CIFAR-10 grey recipe: 1,024 pixels x 256 levels, batch 100
    python benchmarks/made_softmax.py --recipe cards/made/made-mnist.toml --batch 100

Prints the best of --repeats for each, the ratio, and the largest difference of the two paths' figures.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import zoo  # noqa: E402
import zoo_made.factorized as fz  # noqa: E402
import zoo_made.model as made_model  # noqa: E402
from zoo.cards import read_card  # noqa: E402
from zoo.train import TrainConfig, make_optimizer  # noqa: E402


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="experiments/queue/made-cifar10-gray-softmax.toml",
                    help="a softmax MADE's card or recipe")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    card = read_card(a.recipe, recipe=True)
    torch.manual_seed(0)
    model = zoo.create(card.architecture, **card.config)
    if model.output_head.name != "softmax" or model.levels == 2:
        raise SystemExit(f"{a.recipe}: not a factorized-softmax MADE (head {model.output_head.name}, "
                         f"{model.levels} levels)")
    x = torch.randint(0, model.levels, (a.batch, *model.image_shape)).float() / (model.levels - 1)
    f = torch.randn(a.batch, model.num_dims, model.per_dim, requires_grad=True)
    values = torch.randint(0, model.levels, (a.batch, model.num_dims))
    opt = make_optimizer(model, TrainConfig())

    def head(fn):
        return lambda: fn(f, model.level_proj, model.level_bias, values).sum().backward()

    def step():
        loss = model.training_loss(x, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()

    paths = {"whole logits": fz.reference_log_prob, "chunked": fz.factorized_log_prob}
    lps = []
    for fn in paths.values():  # the same weights for both (the steps below change them)
        made_model.factorized_log_prob = fn
        with torch.no_grad():
            lps.append(model.log_prob(x[:8]))
    rows = {}
    for name, fn in paths.items():
        made_model.factorized_log_prob = fn
        rows[name] = (best_of(head(fn), a.repeats), best_of(step, a.repeats))
    made_model.factorized_log_prob = fz.factorized_log_prob
    (h0, s0), (h1, s1) = rows.values()
    lp0, lp1 = lps
    print(f"{a.recipe}: batch {a.batch}, {model.num_dims} pixels x {model.levels} levels, {model.per_dim} features, "
          f"{torch.get_num_threads()} thread(s); best of {a.repeats}")
    print("| path | head fwd+bwd ms | training step ms |\n|---|---|---|")
    for name, (h, s) in rows.items():
        print(f"| {name} | {h * 1e3:.0f} | {s * 1e3:.0f} |")
    print(f"chunked: head {h0 / h1:.2f}x, training step {s0 / s1:.2f}x; largest log_prob difference "
          f"{(lp0 - lp1).abs().max().item():.2e} nats (of {lp0.abs().max().item():.0f})")


if __name__ == "__main__":
    main()
