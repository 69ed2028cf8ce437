"""KID: the unbiased MMD^2 with the cubic polynomial kernel, checked against the published formula on a case
computed by hand, against a direct double loop, and on the command line."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import zoo
from zoo import fid as zfid
from zoo import kid as zkid
from zoo.cli import main


def stand_in_inception(monkeypatch) -> torch.nn.Module:
    """A small seeded feature network put in Inception's place (the real one is tested in test_fid)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, zfid.DIMS))
    monkeypatch.setattr(zfid, "load_inception", lambda path=None: net)
    return net


def test_mmd2_of_a_case_computed_by_hand():
    # d = 2, m = 2: x = (1, 0), (0, 1); y = (1, 1), (0, 0). k(a, b) = (a.b / 2 + 1)^3.
    # k(x1,x2) = 1;  k(y1,y2) = 1;  k(x_i,y1) = 1.5^3 = 3.375;  k(x_i,y2) = 1.
    # MMD^2_u = [2 k(x1,x2)] / 2 + [2 k(y1,y2)] / 2 - 2 (3.375 + 1 + 3.375 + 1) / 4 = 1 + 1 - 4.375 = -2.375
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert zkid.mmd2_unbiased(x, y) == pytest.approx(-2.375, abs=1e-12)
    assert zkid.mmd2_unbiased(y, x) == pytest.approx(-2.375, abs=1e-12)
    # with one subset of all the features, KID is that number, and its std over identical subsets is 0
    r = zkid.kid(x.numpy(), y.numpy(), subsets=5)
    assert r.mean == pytest.approx(-2.375, abs=1e-12) and r.std == pytest.approx(0, abs=1e-12)
    assert (r.n_a, r.n_b, r.subset_size, r.subsets) == (2, 2, 2, 5)


def naive_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al.'s estimator term by term (their eq. 4), in float64 Python loops."""
    m, d = x.shape
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


@pytest.mark.parametrize("m,d", [(3, 4), (7, 16), (12, 5)])
def test_mmd2_equals_the_formula_term_by_term(m, d):
    rng = np.random.default_rng(m * d)
    x, y = rng.random((m, d)) * 3, rng.random((m, d)) * 3 + 0.5
    assert zkid.mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(naive_mmd2(x, y), rel=1e-9)
    # the float32 products (the fast path kid() takes) stay close to the float64 formula
    assert zkid.mmd2_unbiased(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(
        naive_mmd2(x, y), rel=1e-5)


def test_kid_subsets_average_the_formula_over_seeded_draws():
    rng = np.random.default_rng(0)
    a, b = rng.random((30, 8)), rng.random((25, 8)) + 0.2
    r = zkid.kid(a, b, subsets=4, subset_size=10, seed=3)
    g = torch.Generator().manual_seed(3)
    draws = []
    for _ in range(4):
        ia, ib = torch.randperm(30, generator=g)[:10], torch.randperm(25, generator=g)[:10]
        draws.append(naive_mmd2(a[ia.numpy()].astype(np.float32).astype(np.float64),
                                b[ib.numpy()].astype(np.float32).astype(np.float64)))
    assert r.mean == pytest.approx(np.mean(draws), rel=1e-5) and r.std == pytest.approx(np.std(draws), rel=1e-4)
    assert r.subset_size == 10 and zkid.kid(a, b, subsets=4, subset_size=10, seed=3) == r  # reproducible
    assert zkid.kid(a, b, subset_size=1000).subset_size == 25  # never more than the smaller set


def test_kid_is_unbiased_where_fid_is_not():
    """Two samples of one distribution: KID averages to 0 at small n, FID stays well above 0."""
    rng = np.random.default_rng(1)
    d, n = 16, 12
    kids, fids = [], []
    for _ in range(200):
        a, b = rng.random((n, d)), rng.random((n, d))
        kids.append(zkid.mmd2_unbiased(torch.from_numpy(a), torch.from_numpy(b)))
        fids.append(zfid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))
    assert abs(np.mean(kids)) < 3 * np.std(kids) / np.sqrt(len(kids))
    assert np.mean(fids) > 10 * np.std(fids) / np.sqrt(len(fids))
    # and a shifted distribution is told apart
    far = zkid.kid(rng.random((40, d)), rng.random((40, d)) + 0.5, subsets=10, subset_size=20)
    assert far.mean > 5 * far.std > 0


@pytest.mark.parametrize("a,b,match", [(np.zeros((4, 3)), np.zeros((4, 2)), "same d|one d"),
                                       (np.zeros(4), np.zeros((4, 4)), "N, d"),
                                       (np.zeros((1, 3)), np.zeros((4, 3)), "at least 2"),
                                       (np.full((3, 3), np.nan), np.zeros((3, 3)), "NaN")])
def test_kid_bad_input_is_a_clear_error(a, b, match):
    with pytest.raises(zoo.InputError, match=match):
        zkid.kid(a, b)


def test_reference_features_are_cached_and_write_the_fid_statistics(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, zfid.DIMS))
    f = zfid.reference_features("mnist-bin", "test", net, mnist_dir, n=8)
    assert f.shape == (8, zfid.DIMS) and (tmp_path / "cache" / "mnist-bin-test-8-features.npz").is_file()
    stats = zfid.reference_stats("mnist-bin", "test", net, mnist_dir, n=8)  # read from the cache, not recomputed
    np.testing.assert_allclose(stats.mu, f.mean(0), rtol=1e-12)
    broken = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 1))  # would fail if it were called
    np.testing.assert_allclose(zfid.reference_features("mnist-bin", "test", broken, mnist_dir, n=8), f, rtol=1e-6)


@pytest.mark.slow  # sampling a shipped MADE and a 2048-d Frechet distance
def test_eval_kid_with_fid_shares_the_samples(mnist_dir, tmp_path, monkeypatch):
    """`zoo eval --fid --kid` on a tiny card, with a small stand-in feature network (the real one is tested in
    test_fid): both figures are printed and recorded with their commands."""
    from zoo.cards import read_card, write_card
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    net = stand_in_inception(monkeypatch)
    card = tmp_path / "card.toml"
    write_card(zoo.get_card("made-mnist-bin"), card)
    r = CliRunner().invoke(main, ["eval", "made-mnist-bin", "--fid", "--kid", "-n", "6", "--kid-ref-n", "10",
                                  "--data-dir", str(mnist_dir), "--write-card", str(card), "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "FID" in r.output and "KID" in r.output and "6 vs 10" in r.output
    metrics = {(m.name, m.command) for m in read_card(card).metrics}
    assert ("kid", "zoo eval made-mnist-bin --kid -n 6 --seed 0 --kid-ref-n 10") in metrics
    assert ("fid", "zoo eval made-mnist-bin --fid -n 6 --seed 0") in metrics


def test_fid_command_kid_on_two_folders_and_refusal_of_stats(tmp_path, monkeypatch):
    net = stand_in_inception(monkeypatch)
    rng = np.random.default_rng(0)
    for name, shift in (("a", 0), ("b", 100)):
        (tmp_path / name).mkdir()
        for i in range(4):
            arr = np.clip(rng.integers(0, 156, (16, 16)) + shift, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    r = CliRunner().invoke(main, ["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--kid", "--save-stats",
                                  str(tmp_path / "a.npz")])
    assert r.exit_code == 0, r.output
    assert "FID" in r.output and "KID" in r.output and "4 subsets" not in r.output
    refused = CliRunner().invoke(main, ["fid", str(tmp_path / "a.npz"), str(tmp_path / "b"), "--kid"])
    assert refused.exit_code != 0 and "features" in refused.output


def test_eval_recon_fid_measures_the_tokenizers_reconstructions(mnist_dir, tmp_path, monkeypatch):
    """`zoo eval --recon-fid`: the FID of decode(encode(x)) of the split's first n images against the whole split
    (stand-in feature network), equal to the same distance computed through the library, recorded with its
    command; a model whose tokens are pixels is refused with a clear error."""
    from zoo import data as zdata
    from zoo.cards import read_card, write_card
    from zoo.evaluate import reconstructions
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    net = stand_in_inception(monkeypatch)
    card = tmp_path / "card.toml"
    write_card(zoo.get_card("vqvae-mnist"), card)
    r = CliRunner().invoke(main, ["eval", "vqvae-mnist", "--recon-fid", "-n", "40", "--data-dir", str(mnist_dir),
                                  "--write-card", str(card), "--threads", "1"])
    assert r.exit_code == 0, r.output
    [m] = [m for m in read_card(card).metrics if m.name == "recon_fid" and m.n == 40]
    assert m.command == "zoo eval vqvae-mnist --recon-fid -n 40" and m.n == 40
    model = zoo.load("vqvae-mnist")
    d = zdata.load_dataset("mnist", "test", mnist_dir)
    x, _ = d.batch(torch.arange(40))
    recon = reconstructions(model, d, n=40, batch_size=16)
    with torch.no_grad():
        torch.testing.assert_close(recon, model.tokenizer.decode(model.tokenizer.encode(x)).clamp(0, 1))
    expected = zfid.fid(zfid.Stats.from_features(zfid.features(recon, net)),
                        zfid.reference_stats("mnist", "test", net, mnist_dir))
    assert m.value == pytest.approx(expected.value, rel=1e-6, abs=1e-3)
    out = " ".join(r.output.split())
    assert f"reconstruction FID {expected.value:.2f}" in out and "Inception features of 40 reconstructions" in out
    bad = CliRunner().invoke(main, ["eval", "made-mnist-bin", "--recon-fid", "-n", "4", "--data-dir",
                                    str(mnist_dir), "--threads", "1"])
    assert bad.exit_code != 0 and "no learned tokenizer" in bad.output
