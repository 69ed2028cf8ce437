"""Tests of tests/hub_server.py against the real huggingface_hub client."""

import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import HfApi, hf_hub_download, snapshot_download, try_to_load_from_cache  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_server import HubServer  # noqa: E402

REPO = "zoo-test/tiny"
FILES = {
    "config.json": b'{"a": 1}',
    "weights/model.safetensors": bytes(range(256)) * 40,
    "README.md": b"# tiny\n",
}


@pytest.fixture
def hub():
    with HubServer({REPO: dict(FILES)}) as server:
        yield server


def _req(url, method="GET", headers=None):
    r = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(r, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_hf_hub_download_then_cache_reuse(hub, tmp_path):
    path = hf_hub_download(REPO, "weights/model.safetensors", endpoint=hub.url, cache_dir=tmp_path)
    assert pathlib.Path(path).read_bytes() == FILES["weights/model.safetensors"]
    assert pathlib.Path(path).resolve().is_relative_to(tmp_path.resolve())
    sha = hub.commit_sha(REPO)
    assert f"snapshots/{sha}/weights/model.safetensors" in pathlib.Path(path).as_posix()
    # blob is named by the sha256 ETag
    blob = pathlib.Path(path).resolve()
    assert blob.name == hashlib.sha256(FILES["weights/model.safetensors"]).hexdigest()
    methods = [m for m, _ in hub.requests]
    assert "HEAD" in methods and "GET" in methods

    hub.clear_requests()
    again = hf_hub_download(
        REPO, "weights/model.safetensors", endpoint=hub.url, cache_dir=tmp_path, local_files_only=True
    )
    assert again == path
    assert try_to_load_from_cache(REPO, "weights/model.safetensors", cache_dir=tmp_path) == path
    # HF_HUB_OFFLINE is read at import time (and, in 0.x, baked into the cached
    # HTTP session), so exercise it in a fresh interpreter.
    code = (
        "import sys, huggingface_hub as h; print(h.hf_hub_download(sys.argv[1], sys.argv[2], "
        "endpoint=sys.argv[3], cache_dir=sys.argv[4]))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, REPO, "weights/model.safetensors", hub.url, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == path
    assert hub.requests == []

    # Online again: only a HEAD, the blob is reused (no GET).
    assert hf_hub_download(REPO, "weights/model.safetensors", endpoint=hub.url, cache_dir=tmp_path) == path
    assert [m for m, _ in hub.requests] == ["HEAD"]


def test_snapshot_download(hub, tmp_path):
    folder = pathlib.Path(snapshot_download(REPO, endpoint=hub.url, cache_dir=tmp_path))
    assert folder.name == hub.commit_sha(REPO)
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == FILES

    hub.clear_requests()
    again = snapshot_download(REPO, endpoint=hub.url, cache_dir=tmp_path, local_files_only=True)
    assert pathlib.Path(again) == folder
    assert hub.requests == []


def test_resolve_by_commit_sha_and_mutation(hub, tmp_path):
    sha = hub.commit_sha(REPO)
    assert len(sha) == 40 and int(sha, 16) >= 0
    assert HubServer({REPO: dict(FILES)}).add_repo("x/y", FILES) == sha  # deterministic
    p = hf_hub_download(REPO, "config.json", revision=sha, endpoint=hub.url, cache_dir=tmp_path)
    assert pathlib.Path(p).read_bytes() == FILES["config.json"]

    new_sha = hub.set_file(REPO, "config.json", b"corrupt")
    assert new_sha != sha
    p2 = hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=tmp_path, force_download=True)
    assert pathlib.Path(p2).read_bytes() == b"corrupt"
    with pytest.raises(RevisionNotFoundError):  # old sha no longer served
        hf_hub_download(REPO, "config.json", revision=sha, endpoint=hub.url, cache_dir=tmp_path / "c2")


def test_missing_file_repo_revision(hub, tmp_path):
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "nope.bin", endpoint=hub.url, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("zoo-test/missing", "config.json", endpoint=hub.url, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("zoo-test/missing", endpoint=hub.url, cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="v9", endpoint=hub.url, cache_dir=tmp_path)


def test_api_routes(hub):
    api = HfApi(endpoint=hub.url)
    info = api.model_info(REPO)
    assert info.sha == hub.commit_sha(REPO)
    assert sorted(s.rfilename for s in info.siblings) == sorted(FILES)
    files = api.list_repo_files(REPO)
    assert sorted(files) == sorted(FILES)
    tree = list(api.list_repo_tree(REPO, path_in_repo="weights"))
    assert [t.path for t in tree] == ["weights/model.safetensors"]
    assert tree[0].size == len(FILES["weights/model.safetensors"])


def test_raw_protocol(hub):
    url = f"{hub.url}/{REPO}/resolve/main/config.json?download=true"
    status, headers, body = _req(url, "HEAD")
    assert status == 200 and body == b""
    assert headers["Content-Length"] == str(len(FILES["config.json"]))
    assert headers["Connection"] == "close"
    assert headers["ETag"] == '"%s"' % hashlib.sha256(FILES["config.json"]).hexdigest()
    assert headers["X-Repo-Commit"] == hub.commit_sha(REPO)

    status, headers, body = _req(url, headers={"Range": "bytes=2-4"})
    assert status == 206 and body == FILES["config.json"][2:5]
    assert headers["Content-Range"] == f"bytes 2-4/{len(FILES['config.json'])}"

    status, headers, body = _req(f"{hub.url}/zoo-test/missing/resolve/main/x")
    assert status == 401 and headers["X-Error-Code"] == "RepoNotFound"
    assert "error" in json.loads(body) and headers["X-Error-Message"]
    status, headers, _ = _req(f"{hub.url}/{REPO}/resolve/main/x")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    status, headers, _ = _req(f"{hub.url}/{REPO}/resolve/dev/x")
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"

    status, _, body = _req(f"{hub.url}/api/models/{REPO}/tree/main?recursive=true&expand=false")
    entries = json.loads(body)
    assert {e["path"] for e in entries if e["type"] == "file"} == set(FILES)
    assert ("GET", f"/api/models/{REPO}/tree/main") in hub.requests


def test_stop_refuses_connections():
    server = HubServer({REPO: dict(FILES)}).start()
    url = f"{server.url}/{REPO}/resolve/main/config.json"
    assert _req(url)[0] == 200
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_the_suite_ignores_an_exported_offline_hub(tmp_path):
    """Issue 15: with HF_HUB_OFFLINE=1 (and a stray Hub mirror) exported, as on many offline machines, the Hub tests
    still talk to the project's own local server: conftest clears the variables before huggingface_hub reads them."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "ZOO_LOAD_PLUGINS": ""}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"{__file__}::test_hf_hub_download_then_cache_reuse"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
