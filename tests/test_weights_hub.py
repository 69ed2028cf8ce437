"""Weights: resolution, verification, export and Hub loading, against real files and a real HTTP Hub.

Nothing of zoo is mocked: the Hub is tests/hub_server.py on 127.0.0.1, driven by the real huggingface_hub
client through the environment variables zoo.weights reads at call time.
"""
from __future__ import annotations

import pathlib
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import zoo  # noqa: E402
import zoo.export  # noqa: E402
import zoo.weights  # noqa: E402
from zoo.cards import Card, dump_card  # noqa: E402
from zoo.errors import InputError, WeightsError  # noqa: E402

pytest.importorskip("huggingface_hub")
from hub_server import HubServer  # noqa: E402

from reliability import TINY, WFILE, tiny_model  # noqa: E402  (one home for the tiny test model)

REPO = "org/made-tiny"


def all_images(shape=(1, 3, 3)) -> torch.Tensor:
    """Every binary image of the tiny shape (512 of them)."""
    d = shape[0] * shape[1] * shape[2]
    idx = torch.arange(2 ** d)
    bits = (idx[:, None] >> torch.arange(d)) & 1
    return bits.float().reshape(-1, *shape)


def make_card(sha: str, *, config=None, hub_repo=None, hub_revision=None, wfile=WFILE, cid="made-tiny") -> Card:
    return Card(id=cid, plugin="made", architecture="made", description="A tiny MADE for tests.",
                dataset="mnist-bin", data={"dataset": "mnist-bin"}, config=dict(config or TINY),
                weights_file=wfile, sha256=sha, hub_repo=hub_repo, hub_revision=hub_revision)


def write_folder(folder: Path, model: zoo.Model, *, config=None, hub_repo=None) -> tuple[Card, Path]:
    """An export-style folder: card.toml + weights (+ README.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    wpath = folder / WFILE
    sha = zoo.weights.save_weights(model.state_dict(), wpath)
    card = make_card(sha, config=config, hub_repo=hub_repo)
    (folder / "card.toml").write_text(dump_card(card), encoding="utf-8")
    (folder / "README.md").write_text(zoo.export.hub_readme(card), encoding="utf-8")
    return card, wpath


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def assert_same_log_prob(a: zoo.Model, b: zoo.Model, x: torch.Tensor) -> None:
    with torch.no_grad():
        la, lb = a.log_prob(x), b.log_prob(x)
    assert torch.equal(la, lb), (la - lb).abs().max()


class Touch:
    """Unpickling this creates a marker file: proof that a loader ran pickle code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """A clean Hub environment: cache under tmp_path, online, no endpoint yet."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return tmp_path / "hf" / "hub"


@pytest.fixture
def tiny_hub(tmp_path, monkeypatch, hub_env):
    """A Hub serving org/made-tiny (an exported folder of a tiny MADE); yields (server, model)."""
    model = tiny_model()
    write_folder(tmp_path / "export", model, hub_repo=REPO)
    with HubServer({REPO: folder_files(tmp_path / "export")}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server, model


# ---- 1. safetensors round trip and local folders -----------------------------------------------------------

def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    path = tmp_path / "w" / "m.safetensors"
    sha = zoo.weights.save_weights(model.state_dict(), path)
    assert sha == zoo.weights.sha256_file(path) and len(sha) == 64
    assert not list(path.parent.glob("*.tmp"))
    state = zoo.weights.load_weights(path, sha)
    own = model.state_dict()
    assert set(state) == set(own)
    for k in own:
        assert torch.equal(state[k], own[k]), k
    assert zoo.weights.load_weights(path).keys() == state.keys()  # no sha: no check, same content


@pytest.mark.parametrize("prefix", ["local-dir:", ""])
def test_load_local_folder(tmp_path, prefix):
    model = tiny_model()
    folder = tmp_path / "out"
    card, _ = write_folder(folder, model)
    loaded = zoo.load(f"{prefix}{folder}")
    assert not loaded.training
    assert loaded.card.id == card.id and loaded.card.sha256 == card.sha256
    assert_same_log_prob(model, loaded, all_images())
    fresh = zoo.create("made", **TINY)
    with torch.no_grad():
        assert not torch.equal(fresh.log_prob(all_images()), loaded.log_prob(all_images()))


def test_load_folder_with_explicit_weights_override(tmp_path):
    folder = tmp_path / "out"
    write_folder(folder, tiny_model(seed=1))
    other = tiny_model(seed=2)
    other_path = tmp_path / "other.safetensors"
    zoo.weights.save_weights(other.state_dict(), other_path)
    with pytest.warns(zoo.UnverifiedWeightsWarning, match="are not"):  # loaded, but never as the card's model
        loaded = zoo.load(str(folder), weights=other_path)
    assert_same_log_prob(other, loaded, all_images())
    assert str(other_path) in loaded.weights_note and not loaded.card.metrics
    assert loaded.card.sha256 == zoo.weights.sha256_file(other_path) != zoo.read_card(folder / "card.toml").sha256


def test_explicit_weights_are_checked_against_the_card(tmp_path):
    """Issue 14, defect 2: the card's own file passed explicitly loads as the card's model, silently; a file with
    one flipped byte is not the card's model: it warns, its card loses the metrics, and `zoo sample` writes that
    on the figure and in its message."""
    import warnings

    from click.testing import CliRunner
    from PIL import Image

    from zoo.cli import main
    card = zoo.get_card("made-mnist-bin")
    with warnings.catch_warnings():
        warnings.simplefilter("error", zoo.UnverifiedWeightsWarning)
        same = zoo.load("made-mnist-bin", weights=card.weights_path())
    assert same.weights_note == "" and same.card.metrics == card.metrics
    flipped = bytearray(card.weights_path().read_bytes())
    flipped[-3] ^= 0x01
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(flipped))
    with pytest.warns(zoo.UnverifiedWeightsWarning, match="made-mnist-bin's metrics do not apply"):
        m = zoo.load("made-mnist-bin", weights=path)
    assert "not made-mnist-bin's" in m.weights_note and m.card.metrics == [] and m.card.sha256 != card.sha256
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    r1 = CliRunner().invoke(main, ["sample", "made-mnist-bin", "-n", "4", "-o", str(plain), "--threads", "1"])
    r2 = CliRunner().invoke(main, ["sample", "made-mnist-bin", "-n", "4", "-o", str(marked), "--threads", "1",
                                   "--weights", str(path)])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert "other weights" in r2.output and "not made-mnist-bin's" in " ".join(r2.output.split())
    assert "other weights" not in r1.output
    with Image.open(plain) as a, Image.open(marked) as b:
        assert b.height > a.height  # the caption band under the grid
        band = np.asarray(b.convert("RGB"))[a.height:]
        assert (band[..., 0].astype(int) - band[..., 1] > 100).any(), "no red caption text on the figure"


# ---- 2. corrupt, hostile and mismatched inputs ------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.safetensors"
    sha = zoo.weights.save_weights(tiny_model().state_dict(), path)
    return path, sha


def _raises_naming(path: Path, *args, match: str | None = None) -> WeightsError:
    with pytest.raises(WeightsError) as info:
        zoo.weights.load_weights(path, *args)
    assert str(path) in str(info.value)
    if match:
        assert match in str(info.value), str(info.value)
    return info.value


@pytest.mark.parametrize("cut", [1, 16, "header", "tiny"])
def test_truncated_file(saved, cut):
    path, sha = saved
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    keep = {"header": 8 + n // 2, "tiny": 5}.get(cut, len(data) - cut if isinstance(cut, int) else 0)
    path.write_bytes(data[:keep])
    err = _raises_naming(path)
    assert "truncated" in str(err) or "not a safetensors" in str(err)
    _raises_naming(path, sha, match="sha256 mismatch")


@pytest.mark.parametrize("garbage", [
    b"this is not a safetensors file at all\n" * 20,
    bytes(range(256)) * 4,
    b"",
    struct.pack("<Q", 10) + b"not json!!" + b"\0" * 16,
    struct.pack("<Q", 2) + b"[]",                                     # valid JSON, not a table
    struct.pack("<Q", 16) + b'{"a": {"x": 1}} ',                      # a tensor entry without offsets
], ids=["text", "bytes", "empty", "bad-json", "json-list", "no-offsets"])
def test_garbage_bytes(tmp_path, garbage):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(garbage)
    _raises_naming(path)


def test_garbage_with_plausible_header_and_offsets(tmp_path):
    """A header safetensors itself rejects (bad dtype) still gives a WeightsError naming the file."""
    header = b'{"w": {"dtype": "NOPE", "shape": [2], "data_offsets": [0, 8]}}'
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    _raises_naming(path)


def test_sha256_mismatch_one_flipped_byte(saved):
    path, sha = saved
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the tensor data: still a well-formed file
    path.write_bytes(bytes(data))
    zoo.weights.load_weights(path)  # well-formed, so it loads without a sha256 ...
    _raises_naming(path, sha, match="sha256 mismatch")  # ... but not against the card's


def test_sha256_mismatch_through_load(tmp_path):
    folder = tmp_path / "out"
    _, wpath = write_folder(folder, tiny_model())
    data = bytearray(wpath.read_bytes())
    data[-1] ^= 0x80
    wpath.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch") as info:
        zoo.load(str(folder))
    assert str(wpath) in str(info.value)


def test_torch_save_pickle_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save(tiny_model().state_dict(), path)
    err = _raises_naming(path)
    assert "pickle" in str(err)


@pytest.mark.parametrize("how", ["torch.save", "pickle-2", "pickle-4", "pickle-5"])
def test_hostile_pickle_is_never_unpickled(tmp_path, how):
    # the payload works: unpickling it really creates the marker
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Touch(probe)))
    assert probe.exists()

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    if how == "torch.save":
        torch.save({"w": Touch(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"w": Touch(marker)}, protocol=int(how.split("-")[1])))
    assert not marker.exists()
    err = _raises_naming(path)
    assert "pickle" in str(err)
    assert not marker.exists()
    # nor through the front door, with or without a sha256 to check
    folder = tmp_path / "out"
    folder.mkdir()
    card = make_card(zoo.weights.sha256_file(path))
    (folder / "card.toml").write_text(dump_card(card), encoding="utf-8")
    (folder / WFILE).write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="pickle"):
        zoo.load(str(folder))
    with pytest.raises(WeightsError, match="pickle"):
        zoo.load(str(folder), weights=path)
    assert not marker.exists()


def test_shapes_do_not_match_card_config(tmp_path):
    folder = tmp_path / "out"
    card, wpath = write_folder(folder, tiny_model(hidden=[16]), config=TINY)  # card says hidden=[8]
    with pytest.raises(WeightsError) as info:
        zoo.load(str(folder))
    msg = str(info.value)
    assert str(wpath) in msg and "layers.0.weight" in msg and "wrong shapes" in msg


def test_missing_and_unexpected_keys(tmp_path):
    state = tiny_model().state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["skip.weight"]
    folder = tmp_path / "out"
    folder.mkdir()
    sha = zoo.weights.save_weights(state, folder / WFILE)
    (folder / "card.toml").write_text(dump_card(make_card(sha)), encoding="utf-8")
    with pytest.raises(WeightsError) as info:
        zoo.load(f"local-dir:{folder}")
    msg = str(info.value)
    assert "skip.weight" in msg and "extra.weight" in msg and str(folder / WFILE) in msg


def test_missing_explicit_weights_path(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match="not found") as info:
        zoo.load("made-mnist-bin", weights=missing)
    assert str(missing) in str(info.value)
    with pytest.raises(WeightsError, match="not found") as info:
        zoo.weights.resolve_weights(zoo.get_card("made-mnist-bin"), explicit=missing)
    assert str(missing) in str(info.value)
    _raises_naming(missing, match="not found")


def test_folder_without_weights_file(tmp_path):
    folder = tmp_path / "out"
    _, wpath = write_folder(folder, tiny_model())
    wpath.unlink()
    with pytest.raises(WeightsError) as info:
        zoo.load(str(folder))
    assert str(wpath) in str(info.value)


# ---- 3. the Hub -------------------------------------------------------------------------------------------

def test_hub_load_then_offline_reuse(tiny_hub, monkeypatch, hub_env):
    server, model = tiny_hub
    loaded = zoo.load(f"hf://{REPO}")
    assert not loaded.training and loaded.card.hub_repo == REPO
    assert_same_log_prob(model, loaded, all_images())
    assert server.requests, "the first load must go to the server"
    assert hub_env.is_dir() and any(hub_env.rglob(WFILE))  # cached under HF_HOME/hub, read at call time

    server.clear_requests()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = zoo.load(f"hf://{REPO}")
    assert server.requests == []
    assert_same_log_prob(model, again, all_images())


def test_hub_load_at_commit_revision(tiny_hub):
    server, model = tiny_hub
    loaded = zoo.load(f"hf://{REPO}@{server.commit_sha(REPO)}")
    assert_same_log_prob(model, loaded, all_images())


def test_hub_missing_repo(tiny_hub):
    with pytest.raises(WeightsError, match="not found") as info:
        zoo.load("hf://org/missing")
    assert "org/missing" in str(info.value)


def test_hub_missing_weights_file(tiny_hub):
    server, _ = tiny_hub
    server.remove_file(REPO, WFILE)
    with pytest.raises(WeightsError) as info:
        zoo.load(f"hf://{REPO}")
    msg = str(info.value)
    assert WFILE in msg and "no file" in msg, msg


def test_hub_weights_sha256_mismatch(tiny_hub):
    server, _ = tiny_hub
    from safetensors.torch import save
    other = tiny_model(seed=7)  # a well-formed file, but not the one the card describes
    server.set_file(REPO, WFILE, save({k: v.contiguous() for k, v in other.state_dict().items()}))
    with pytest.raises(WeightsError, match="sha256 mismatch") as info:
        zoo.load(f"hf://{REPO}")
    assert WFILE in str(info.value)


def test_hub_bad_revision(tiny_hub):
    with pytest.raises(WeightsError, match="revision") as info:
        zoo.load(f"hf://{REPO}@no-such-branch")
    assert "no-such-branch" in str(info.value)


def test_hub_bad_reference():
    with pytest.raises(InputError):
        zoo.load("hf://just-a-name")


def test_hub_offline_never_downloaded(tiny_hub, monkeypatch):
    server, _ = tiny_hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    server.clear_requests()
    with pytest.raises(WeightsError) as info:
        zoo.load(f"hf://{REPO}")
    msg = str(info.value)
    assert "cache" in msg and "HF_HUB_OFFLINE" in msg, msg
    assert zoo.weights.hub_cache_dir() in msg
    assert server.requests == []


# ---- 4. card-level resolution ------------------------------------------------------------------------------

def _card_on_disk(root: Path, card: Card) -> Card:
    """Write a card as a plugin would ship it (root/cards/ID.toml, bundled weights in root/weights/)."""
    (root / "cards").mkdir(parents=True, exist_ok=True)
    path = root / "cards" / f"{card.id}.toml"
    path.write_text(dump_card(card), encoding="utf-8")
    return zoo.read_card(path)


def test_resolve_remote_then_cached(tiny_hub, tmp_path, monkeypatch):
    server, model = tiny_hub
    sha = zoo.weights.sha256_file(tmp_path / "export" / WFILE)
    card = _card_on_disk(tmp_path / "plugin", make_card(sha, hub_repo=REPO))
    assert card.weights_path() == tmp_path / "plugin" / "weights" / WFILE
    assert not card.weights_path().exists()

    assert zoo.weights.weight_status(card) == "remote"
    server.clear_requests()
    path = zoo.weights.resolve_weights(card)
    assert server.requests
    assert path.is_file() and zoo.weights.sha256_file(path) == sha
    assert path.resolve().is_relative_to((tmp_path / "hf").resolve())
    assert zoo.weights.weight_status(card) == "cached"

    server.clear_requests()
    assert zoo.weights.resolve_weights(card) == path  # from the cache, without asking the server
    assert server.requests == []
    state = zoo.weights.load_weights(path, card.sha256)
    m = zoo.create(card.architecture, **card.config)
    zoo.weights.load_into(m, state, str(path))
    assert_same_log_prob(model, m.eval(), all_images())

    # an explicit path wins over everything
    explicit = tmp_path / "export" / WFILE
    assert zoo.weights.resolve_weights(card, explicit=explicit) == explicit


def test_resolve_pinned_revision(tiny_hub, tmp_path):
    server, _ = tiny_hub
    sha = zoo.weights.sha256_file(tmp_path / "export" / WFILE)
    card = _card_on_disk(tmp_path / "plugin",
                         make_card(sha, hub_repo=REPO, hub_revision=server.commit_sha(REPO)))
    assert zoo.weights.weight_status(card) == "remote"
    path = zoo.weights.resolve_weights(card)
    assert zoo.weights.sha256_file(path) == sha
    assert zoo.weights.weight_status(card) == "cached"


def test_resolve_bundled_and_missing(tmp_path, hub_env):
    model = tiny_model()
    root = tmp_path / "plugin"
    sha = zoo.weights.save_weights(model.state_dict(), root / "weights" / WFILE)
    card = _card_on_disk(root, make_card(sha))
    assert zoo.weights.weight_status(card) == "bundled"
    assert zoo.weights.resolve_weights(card) == root / "weights" / WFILE

    lonely = _card_on_disk(tmp_path / "other", make_card(sha, cid="made-lonely"))
    assert zoo.weights.weight_status(lonely) == "missing"
    with pytest.raises(WeightsError, match="neither bundled"):
        zoo.weights.resolve_weights(lonely)
    in_memory = make_card(sha)
    assert zoo.weights.weight_status(in_memory) == "missing"
    with pytest.raises(WeightsError):
        zoo.weights.resolve_weights(in_memory)


def test_resolve_remote_repo_missing(tiny_hub, tmp_path):
    card = _card_on_disk(tmp_path / "plugin", make_card("0" * 64, hub_repo="org/gone"))
    assert zoo.weights.weight_status(card) == "remote"
    with pytest.raises(WeightsError, match="not found"):
        zoo.weights.resolve_weights(card)
    assert zoo.weights.weight_status(card) == "remote"


# ---- 5. export --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "out"
    assert zoo.export.export("made-mnist-bin", out) == out
    return out


def test_export_layout(exported):
    names = sorted(p.name for p in exported.iterdir())
    assert names == ["README.md", "app.py", "card.toml", "made-mnist-bin.safetensors", "requirements.txt"]
    readme = (exported / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    front = readme.split("---\n")[1]
    assert "library_name: zoo" in front.splitlines()
    assert "# made-mnist-bin" in readme
    card = zoo.read_card(exported / "card.toml")
    original = zoo.get_card("made-mnist-bin")
    assert card.id == original.id and card.config == original.config
    assert card.sha256 == original.sha256 == zoo.weights.sha256_file(exported / card.weights_file)
    assert [m.name for m in card.metrics] == [m.name for m in original.metrics]


def test_export_loads_identically(exported):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 1, 28, 28, generator=g) > 0.7).float()
    a, b = zoo.load(str(exported)), zoo.load("made-mnist-bin")
    assert not a.training
    assert_same_log_prob(a, b, x)
    c = zoo.load(f"local-dir:{exported}")
    assert_same_log_prob(c, b, x)


def test_export_refuses_non_empty_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        zoo.export.export("made-mnist-bin", out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_export_overwrite_and_repo(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("old")
    zoo.export.export("made-mnist-bin", out, repo="someone/made-mnist-bin", overwrite=True)
    card = zoo.read_card(out / "card.toml")
    assert card.hub_repo == "someone/made-mnist-bin" and card.hub_revision is None
    assert 'zoo.load("hf://someone/made-mnist-bin")' in (out / "README.md").read_text(encoding="utf-8")


def test_export_then_hub_round_trip(exported, tmp_path, monkeypatch, hub_env):
    """The exported folder, served by a Hub, loads with hf:// exactly as the bundled model."""
    with HubServer({"org/made-mnist-bin": folder_files(exported)}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        a = zoo.load("hf://org/made-mnist-bin")
    x = (torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    assert_same_log_prob(a, zoo.load("made-mnist-bin"), x)


def test_export_unknown_model(tmp_path):
    with pytest.raises(zoo.UnknownModelError):
        zoo.export.export("made-nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()
