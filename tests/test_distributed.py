"""Distributed runs on CPU: 2 gloo processes must reproduce 1 process (training, resume across world sizes,
validation NLL, sampling and FID statistics). One 2-process job does all the distributed work; each test
compares one of its results with the single-process computation."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import zoo
from zoo import distributed as zdist
from zoo import fid as zfid
from zoo.data import ImageData
from zoo.evaluate import nll
from zoo.train import BEST_FILE, TrainConfig, fit
from zoo.weights import load_weights

from fakedata import tiny_data  # noqa: E402  (tests/ is on sys.path: conftest)

WORLD = 2
# 46 training images in global batches of 15: the last batch has 1 image, so rank 1's share of it is empty,
# and 15 splits unevenly (8 + 7): both need the per-rank loss weighting to match one process
CFG = dict(epochs=2, batch_size=15, lr=0.01, checkpoint_every=3, seed=0)
PART_STEPS = 5
FEATURE_DIMS = 5


def model() -> zoo.Model:
    torch.manual_seed(0)  # agnostic ordering: training draws orderings from the step's generator too
    return zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[16], num_masks=3, ordering="agnostic")


def data():
    return tiny_data(46, "train", True), tiny_data(21, "val", False)


TOK = dict(image_shape=[1, 12, 12], channels=8, latent_dim=8, codebook_size=16, scales=[1, 2, 3])
VQ_CFG = dict(epochs=1, batch_size=8, lr=3e-3, seed=0, val_n=8)


def vq_model() -> zoo.Model:
    """A tiny VQ-VAE with most codes dead from the start, so the run re-seeds codes from the batch's latents."""
    torch.manual_seed(0)
    vq = zoo.create("vqvae", **TOK)
    vq.usage[:12] = 0.0
    return vq


def vq_data() -> tuple[ImageData, ImageData]:
    g = torch.Generator().manual_seed(2)
    x = ((torch.rand(40, 1, 12, 12, generator=g) > 0.6) * 255).to(torch.uint8)
    return tuple(ImageData("mnist", s, "synthetic", x[a:b], torch.zeros(b - a, dtype=torch.long), ("0",), "test data")
                 for s, a, b in (("train", 0, 32), ("val", 32, 40)))


def feature_net() -> torch.nn.Module:
    """A stand-in for Inception (whose 299x299 forward is too slow for a test): what is tested is the reduction."""
    torch.manual_seed(5)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, FEATURE_DIMS))


def images(n: int, seed: int | None) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _job(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    out = Path(out)
    assert zdist.setup("cpu") == torch.device("cpu") and zdist.world_size() == WORLD
    try:
        train, val = data()
        r = fit(model(), train, val, TrainConfig(**CFG), out / "full", progress=False)
        fit(model(), train, val, TrainConfig(**CFG, max_steps=PART_STEPS), out / "part", progress=False)
        fit(vq_model(), *vq_data(), TrainConfig(**VQ_CFG), out / "vq", progress=False)
        m = model()
        val_nll = nll(m, val, batch_size=4, distributed=True)
        x = zdist.sample(m, 5, seed=3)
        lo, hi = zdist.shard(7)
        stats = zfid.image_stats(images(7, 0)[lo:hi], feature_net(), batch_size=2, distributed=True,
                                 dims=FEATURE_DIMS)
        sampled = zfid.sample_stats(images, 9, feature_net(), seed=4, batch_size=2, distributed=True,
                                    dims=FEATURE_DIMS)
        # a number rank 0 chose on its clock (a --time-budget schedule's length) reaches every rank
        (out / f"broadcast-{rank}.txt").write_text(str(zdist.broadcast_int(41 if rank == 0 else 7)))
        if rank == 0:
            torch.save({"history": r.history, "steps": r.global_step, "val_nll": (val_nll.nats, val_nll.n),
                        "samples": x, "mu": stats.mu, "sigma": stats.sigma, "n": stats.n,
                        "sampled": (sampled.mu, sampled.sigma, sampled.n)}, out / "result.pt")
    finally:
        zdist.teardown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, dict]:
    """Run the 2-process gloo job once; its run folders and results."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_job, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out, torch.load(out / "result.pt", weights_only=False)


def assert_same_weights(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f"{k}: {m}")


def test_two_processes_train_the_weights_of_one(two_processes, tmp_path):
    out, res = two_processes
    train, val = data()
    ref = fit(model(), train, val, TrainConfig(**CFG), tmp_path / "ref", progress=False)
    assert res["steps"] == ref.global_step == 8
    assert_same_weights(load_weights(out / "full" / BEST_FILE), load_weights(tmp_path / "ref" / BEST_FILE))
    # the run really learned something (so equal weights are not equal initial weights)
    assert not torch.equal(load_weights(tmp_path / "ref" / BEST_FILE)["layers.0.weight"],
                           model().state_dict()["layers.0.weight"])
    for a, b in zip(res["history"], ref.history):
        assert a["val_nll"] == pytest.approx(b["val_nll"], abs=1e-5)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)


def test_two_processes_train_a_vqvae_like_one_with_the_same_codebook_reseeding(two_processes, tmp_path):
    """Dead-code re-seeding edits the codebook in place, outside DDP's gradient sync: it must use the global
    batch's counts and latents, or the ranks' codebooks drift apart."""
    out, _ = two_processes
    fit(vq_model(), *vq_data(), TrainConfig(**VQ_CFG), tmp_path / "vq", progress=False)
    one, two = load_weights(tmp_path / "vq" / BEST_FILE), load_weights(out / "vq" / BEST_FILE)
    assert not torch.allclose(one["codebook.weight"][:12], vq_model().codebook.weight[:12])  # re-seeded
    # Adam turns float rounding in tiny gradients into steps of up to lr, so 4 steps of 3e-3 may differ by
    # 1.2e-2; re-seeding from each rank's own slice instead moves codes apart by about 1
    assert_same_weights(two, one, atol=1.2e-2)


def test_a_two_process_checkpoint_resumes_in_one_process(two_processes, tmp_path):
    out, _ = two_processes
    train, val = data()
    resumed = fit(model(), train, val, TrainConfig(**CFG), out / "part", resume=True, progress=False)
    ref = fit(model(), train, val, TrainConfig(**CFG), tmp_path / "ref", progress=False)
    assert resumed.global_step == ref.global_step
    assert_same_weights(load_weights(out / "part" / BEST_FILE), load_weights(tmp_path / "ref" / BEST_FILE))


def test_broadcast_int_gives_every_rank_rank_0s_number(two_processes):
    out, _ = two_processes
    assert [(out / f"broadcast-{r}.txt").read_text() for r in range(WORLD)] == ["41"] * WORLD
    assert zdist.broadcast_int(5) == 5  # one process: the number itself


def test_sharded_validation_nll_equals_one_process(two_processes):
    _, res = two_processes
    r = nll(model(), data()[1], batch_size=4)
    assert res["val_nll"][1] == r.n == 21
    assert res["val_nll"][0] == pytest.approx(r.nats, abs=1e-5)  # float32 log_prob, other batch splits


def test_sharded_sampling_gathers_each_ranks_share_in_order(two_processes):
    _, res = two_processes
    m = model()
    parts = [m.sample(hi - lo, seed=zdist.rank_seed(3, r, WORLD))
             for r, (lo, hi) in enumerate(zdist.shard(5, r, WORLD) for r in range(WORLD))]
    assert torch.equal(res["samples"], torch.cat(parts))
    assert zdist.rank_seed(3, 0, 1) == 3 and zdist.rank_seed(3, 0, 2) != zdist.rank_seed(3, 1, 2)


def shard_features(x: torch.Tensor, n: int) -> np.ndarray:
    """Features of x computed shard by shard with the batches and the thread count the ranks used (float32
    results depend on both), concatenated: the features whose statistics the ranks reduced."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return np.concatenate([zfid.features(x[lo:hi], feature_net(), batch_size=2)
                               for lo, hi in (zdist.shard(n, r, WORLD) for r in range(WORLD))])
    finally:
        torch.set_num_threads(threads)


def test_sharded_fid_statistics_equal_unsharded(two_processes):
    _, res = two_processes
    feats = shard_features(images(7, 0), 7)
    one = zfid.Stats.from_features(feats)
    assert res["n"] == one.n == 7
    np.testing.assert_allclose(res["mu"], one.mu, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(res["sigma"], one.sigma, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(one.sigma, np.cov(feats, rowvar=False), rtol=1e-10, atol=1e-15)
    assert zfid.fid(zfid.Stats(res["mu"], res["sigma"], 7), one).value == pytest.approx(0.0, abs=1e-9)
    # sampling for FID: each rank draws its share with its own seed; the statistics are those of all shares
    shares = torch.cat([images(hi - lo, zdist.rank_seed(4, r, WORLD))
                        for r, (lo, hi) in enumerate(zdist.shard(9, r, WORLD) for r in range(WORLD))])
    whole = zfid.Stats.from_features(shard_features(shares, 9))
    mu, sigma, n = res["sampled"]
    assert n == 9
    np.testing.assert_allclose(mu, whole.mu, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sigma, whole.sigma, rtol=1e-10, atol=1e-15)


def test_accumulators_merge_and_single_process_helpers_are_identities():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 4)) + 3.0
    parts = [zfid.StatsAccumulator(4).add(feats[a:b]) for a, b in ((0, 11), (11, 11), (11, 30))]
    merged = parts[0].merge(parts[1]).merge(parts[2]).stats()
    np.testing.assert_allclose(merged.sigma, np.cov(feats, rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(merged.mu, feats.mean(0), rtol=1e-12)
    with pytest.raises(zoo.InputError, match="features must be"):
        zfid.StatsAccumulator(4).add(feats[:, :3])
    assert [zdist.shard(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]
    assert [zdist.shard(1, r, 3) for r in range(3)] == [(0, 1), (1, 1), (1, 1)]
    assert not zdist.is_initialized() and zdist.world_size() == 1 and zdist.is_main()
    t = torch.arange(3)
    assert zdist.all_reduce_sum(t) is t and zdist.gather_cat(t) is t


RECIPE = """id = "tiny-made"
plugin = "made"
architecture = "made"
description = "a tiny MADE for the torchrun test"

[data]
dataset = "mnist-bin"

[config]
image_shape = [1, 28, 28]
levels = 2
hidden = [8]
num_masks = 2
seed = 0

[training]
epochs = 1
batch_size = 25
lr = 0.01
seed = 0
"""


@pytest.mark.slow
def test_the_readme_torchrun_command_trains_like_one_process(tmp_path, mnist_dir):
    """`torchrun --standalone --nproc-per-node 2 -m zoo.cli train ...` (the README's command) on the tests'
    small data: rank 0 writes one card and the weights of the 1-process command."""
    import subprocess
    import sys

    from click.testing import CliRunner

    import zoo_made
    from zoo.cli import main
    recipe = tmp_path / "tiny-made.toml"
    recipe.write_text(RECIPE)
    args = ["train", str(recipe), "--data-dir", str(mnist_dir), "--max-steps", "3", "--no-test"]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(zoo.__file__).parents[1]), str(Path(zoo_made.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "zoo.cli", *args, "--out", str(tmp_path / "two"), "--threads", "1"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best val_nll") == 1 and "(2 processes)" in done.stdout
    # one thread, as each torchrun process: the free-core default would make the reduction order depend on the load
    one = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "one"), "--threads", "1"], catch_exceptions=False)
    assert one.exit_code == 0, one.output
    # Adam turns float rounding in tiny gradients into steps of up to lr; 3 steps of lr 0.01 move weights ~3e-2.
    # Two half-batches summed by DDP round otherwise than one batch, and how depends on the CPU's kernels: on one
    # machine one weight of 6,272 differed by 1.2e-5, so the bound is 1e-4, still 300x below what the steps move
    assert_same_weights(load_weights(tmp_path / "two" / "tiny-made.safetensors"),
                        load_weights(tmp_path / "one" / "tiny-made.safetensors"), atol=1e-4)
    card = zoo.read_card(tmp_path / "two" / "card.toml")
    assert card.training["run"]["processes"] == 2
    assert card.metric("val_nll").value == pytest.approx(zoo.read_card(tmp_path / "one" / "card.toml")
                                                         .metric("val_nll").value, abs=1e-3)
