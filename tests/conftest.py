"""Shared test fixtures: small data that the tests make themselves (never the real datasets)."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# The suite is hermetic: what a user may have exported (an offline Hub, a Hub mirror, data and cache roots, a
# plugin allow-list) must not change what the tests see. huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT
# when it is imported, so they are cleared here, before anything imports it; caches go to a fresh folder.
for _var in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_DISABLE_XET", "ZOO_LOAD_PLUGINS",
             "ZOO_DATA_DIR", "ZOO_FID_WEIGHTS", "ZOO_FID_CACHE", "ZOO_CACHE", "ZOO_THREADS", "OMP_NUM_THREADS"):
    os.environ.pop(_var, None)
_CACHE = tempfile.mkdtemp(prefix="zoo-tests-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.update(HF_HOME=str(Path(_CACHE) / "hf"), XDG_CACHE_HOME=str(Path(_CACHE) / "cache"))

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

from fakedata import fake_digits, make_mnist, write_idx  # noqa: E402,F401  (shared with tests/reliability.py)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A data root in torchvision's MNIST layout with 5,200 train and 200 test synthetic images."""
    return make_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture
def tiny_made():
    import zoo
    return zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[16, 16], num_masks=2, seed=3)
