"""A tiny, real HTTP server speaking the Hugging Face Hub file-resolve protocol.

Used by tests that exercise the *real* ``huggingface_hub`` client
(``hf_hub_download``, ``snapshot_download``, ``try_to_load_from_cache``)
against 127.0.0.1, with no network.  Standard library only.

Usage::

    from hub_server import HubServer

    with HubServer({"org/name": {"config.json": b"{}", "w/model.bin": b"..."}}) as hub:
        path = hf_hub_download("org/name", "config.json",
                               endpoint=hub.url, cache_dir=tmp_path)
        assert hub.requests            # [(method, path), ...]
        hub.set_file("org/name", "config.json", b"corrupt")   # mutate after start

What it serves (one revision per repo, model repos only):

* ``HEAD``/``GET /{repo_id}/resolve/{rev}/{path}`` -> 200 with ``X-Repo-Commit``,
  ``ETag`` (quoted sha256 of the content), true ``Content-Length`` (also on HEAD),
  ``Content-Type: application/octet-stream``.  ``Range`` requests get 206 +
  ``Content-Range`` (416 when unsatisfiable).
* ``GET /api/models/{repo_id}[/revision/{rev}]`` -> model info JSON
  (``id``, ``sha``, ``siblings``, ``private``, ``lastModified``, ...).
* ``GET /api/models/{repo_id}/tree/{rev}[/{path}][?recursive=...]`` -> list of
  ``{"type": "file"|"directory", "path", "size", "oid", "lfs"}`` entries.
* Errors mimic the Hub: unknown repo -> 401 ``X-Error-Code: RepoNotFound``;
  unknown revision -> 404 ``RevisionNotFound``; unknown file -> 404
  ``EntryNotFound`` (with ``X-Repo-Commit`` so the client caches ``.no_exist``).
  Each also carries ``X-Error-Message`` and a JSON body ``{"error": ...}``.
  Any other route -> plain 404.

Revisions: ``"main"`` and the repo's commit sha both resolve.  The sha is a
deterministic 40-hex digest of the repo's sorted file names + contents, so it
changes when files change (pass ``sha=`` to :meth:`HubServer.add_repo` to pin it).
Every file is presented as if stored in LFS (ETag = sha256; tree ``oid`` is the
git blob sha1 and ``lfs.oid`` the sha256), so blob names in the cache are sha256.

Every response carries ``Connection: close``: otherwise a pooled keep-alive
connection can keep answering after :meth:`HubServer.stop`.

Faults: :meth:`HubServer.interrupt` makes GETs of one file stop at a byte offset of the file, with the
true ``Content-Length`` already sent: the connection is then cut (the client sees a short body) or, with
``stall=True``, held open until :meth:`HubServer.release` or :meth:`HubServer.stop` (to kill a client
mid-download).

Pitfalls for test authors
-------------------------
* ``huggingface_hub`` reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` **at import
  time** (into ``huggingface_hub.constants``).  Setting the environment variable
  inside a test is therefore too late once the library is imported: pass
  ``endpoint=server.url`` explicitly to ``hf_hub_download``/``snapshot_download``
  (and ``HfApi(endpoint=...)``) and ``cache_dir=tmp_path``.  To simulate offline
  mode use ``local_files_only=True``; monkeypatching
  ``huggingface_hub.constants.HF_HUB_OFFLINE`` works on 1.x/2.x but NOT on 0.x
  (there the offline adapter is baked into the cached HTTP session), so test
  real ``HF_HUB_OFFLINE=1`` in a subprocess.
* A *dead* server (connection refused) or 5xx answers cost the client ~23 s of
  retries/back-off before it gives up.  Error-path tests should use the 4xx
  answers above (unknown repo/revision/file), which fail immediately.
* ``server.requests`` records ``(method, path)`` with the query string removed
  and the path as sent (percent-encoded).  Use :meth:`HubServer.clear_requests`
  before a second load and assert it stays empty to prove cache reuse.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer"]

_LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def _commit_sha(files: dict[str, bytes]) -> str:
    h = hashlib.sha1()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode("utf-8") + b"\0")
        h.update(str(len(data)).encode("ascii") + b"\0")
        h.update(data)
    return h.hexdigest()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Repo:
    """Immutable snapshot of one repo (replaced wholesale on mutation)."""

    def __init__(self, repo_id: str, files: dict[str, bytes], sha: str | None = None):
        self.repo_id = repo_id
        self.files: dict[str, bytes] = {}
        for path, data in files.items():
            if not isinstance(path, str) or not path or path.startswith("/"):
                raise ValueError(f"bad file path {path!r}")
            if isinstance(data, str):
                data = data.encode("utf-8")
            self.files[path] = bytes(data)
        if sha is not None and not _SHA_RE.match(sha):
            raise ValueError(f"sha must be 40 lowercase hex chars, got {sha!r}")
        self.sha = sha or _commit_sha(self.files)
        self.pinned_sha = sha is not None
        self.sha256 = {p: hashlib.sha256(d).hexdigest() for p, d in self.files.items()}
        self.blob = {p: _git_blob_sha1(d) for p, d in self.files.items()}
        dirs: set[str] = set()
        for p in self.files:
            parts = p.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        self.dirs = dirs

    def resolves(self, rev: str) -> bool:
        return rev == "main" or rev == self.sha

    def file_entry(self, path: str) -> dict:
        data = self.files[path]
        return {
            "type": "file",
            "path": path,
            "size": len(data),
            "oid": self.blob[path],
            "lfs": {"oid": self.sha256[path], "size": len(data), "pointerSize": 134},
        }

    def dir_entry(self, path: str) -> dict:
        oid = hashlib.sha1(("tree " + self.sha + " " + path).encode("utf-8")).hexdigest()
        return {"type": "directory", "path": path, "size": 0, "oid": oid}

    def info(self) -> dict:
        return {
            "_id": self.sha[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0] if "/" in self.repo_id else None,
            "sha": self.sha,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": _LAST_MODIFIED,
            "createdAt": _LAST_MODIFIED,
            "siblings": [
                {
                    "rfilename": p,
                    "size": len(self.files[p]),
                    "blobId": self.blob[p],
                    "lfs": {"sha256": self.sha256[p], "size": len(self.files[p]), "pointerSize": 134},
                }
                for p in sorted(self.files)
            ],
        }


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zoo-test-hub/1.0"
    hub: "HubServer"  # set on the per-server subclass

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    # --- dispatch -----------------------------------------------------
    def do_HEAD(self):
        self._handle(head=True)

    def do_GET(self):
        self._handle(head=False)

    def do_POST(self):
        self._handle(head=False)

    def _handle(self, head: bool) -> None:
        self.close_connection = True
        split = urlsplit(self.path)
        self.hub._record(self.command, split.path)
        # Drain any request body so the client never sees a reset.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        try:
            if self.command == "POST":
                raise _HubError(404, None, f"route not found: {self.command} {split.path}")
            raw = [unquote(s) for s in split.path.split("/")[1:]]
            query = parse_qs(split.query)
            if len(raw) >= 2 and raw[0] == "api" and raw[1] == "models":
                self._api_models(raw[2:], query, head)
            else:
                self._resolve(raw, head)
        except _HubError as e:
            self._send_error(e, head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # --- routes -------------------------------------------------------
    @staticmethod
    def _split_repo(segs: list[str], keywords: tuple[str, ...]) -> tuple[str, str | None, list[str]] | None:
        """Split ``[ns, name, kw, ...]`` or ``[name, kw, ...]`` into (repo_id, kw, rest)."""
        if len(segs) >= 3 and segs[2] in keywords:
            return f"{segs[0]}/{segs[1]}", segs[2], segs[3:]
        if len(segs) >= 2 and segs[1] in keywords:
            return segs[0], segs[1], segs[2:]
        if len(segs) in (1, 2) and all(segs):
            return "/".join(segs), None, []
        return None

    def _repo(self, repo_id: str) -> _Repo:
        repo = self.hub._get_repo(repo_id)
        if repo is None:
            raise _HubError(401, "RepoNotFound", "Repository not found")
        return repo

    def _check_rev(self, repo: _Repo, rev: str) -> None:
        if not repo.resolves(rev):
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    def _resolve(self, raw: list[str], head: bool) -> None:
        parsed = self._split_repo(raw, ("resolve",))
        if parsed is None or parsed[1] is None or len(parsed[2]) < 2:
            raise _HubError(404, None, f"route not found: {self.path}")
        repo_id, _, rest = parsed
        rev, path = rest[0], "/".join(rest[1:])
        repo = self._repo(repo_id)
        self._check_rev(repo, rev)
        data = repo.files.get(path)
        if data is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on \"{rev}\"", commit=repo.sha)

        total = len(data)
        status, body, extra = 200, data, {}
        rng = self.headers.get("Range")
        if rng:
            span = self._parse_range(rng, total)
            if span is None:
                headers = {"X-Repo-Commit": repo.sha, "Content-Range": f"bytes */{total}"}
                self._send(416, b"", head, headers, content_type="text/plain")
                return
            start, end = span
            status, body = 206, data[start : end + 1]
            extra["Content-Range"] = f"bytes {start}-{end}/{total}"
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{repo.sha256[path]}"',
            "Accept-Ranges": "bytes",
            **extra,
        }
        fault = None if head else self.hub._take_interruption(repo_id, path)
        if fault is not None:
            offset, stall = fault
            start = int(extra["Content-Range"].split()[1].split("-")[0]) if "Content-Range" in extra else 0
            self._send_interrupted(status, body, max(0, offset - start), headers, stall)
            return
        self._send(status, body, head, headers, content_type="application/octet-stream")

    def _send_interrupted(self, status: int, body: bytes, keep: int, headers: dict, stall: bool) -> None:
        """Announce the whole body, send only its first `keep` bytes, then stall or cut the connection."""
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[:keep])
        self.wfile.flush()
        if stall:
            self.hub._released.wait(timeout=120)
        self.close_connection = True

    @staticmethod
    def _parse_range(value: str, total: int) -> tuple[int, int] | None:
        m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
        if not m or (m.group(1) == "" and m.group(2) == ""):
            return None
        if m.group(1) == "":  # suffix: last N bytes
            n = int(m.group(2))
            if n == 0 or total == 0:
                return None
            return max(total - n, 0), total - 1
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else total - 1
        if start >= total or end < start:
            return None
        return start, min(end, total - 1)

    def _api_models(self, segs: list[str], query: dict, head: bool) -> None:
        parsed = self._split_repo(segs, ("revision", "tree"))
        if parsed is None:
            raise _HubError(404, None, f"route not found: {self.path}")
        repo_id, kw, rest = parsed
        repo = self._repo(repo_id)
        if kw is None:
            self._send_json(repo.info(), head, repo)
            return
        if not rest or not rest[0]:
            raise _HubError(404, None, f"route not found: {self.path}")
        rev = rest[0]
        self._check_rev(repo, rev)
        if kw == "revision":
            if len(rest) != 1:
                raise _HubError(404, None, f"route not found: {self.path}")
            self._send_json(repo.info(), head, repo)
            return
        # tree
        base = "/".join(s for s in rest[1:] if s).strip("/")
        recursive = (query.get("recursive", ["false"])[-1].lower() in ("1", "true", "yes"))
        if base and base not in repo.dirs:
            if base in repo.files:
                raise _HubError(400, None, f"{base} is a file, not a directory")
            raise _HubError(404, "EntryNotFound", f"{base} does not exist on \"{rev}\"", commit=repo.sha)
        prefix = base + "/" if base else ""
        entries = []
        for d in sorted(repo.dirs):
            if d.startswith(prefix) and (recursive or "/" not in d[len(prefix):]):
                entries.append(repo.dir_entry(d))
        for p in sorted(repo.files):
            if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):]):
                entries.append(repo.file_entry(p))
        self._send_json(entries, head, repo)

    # --- responses ----------------------------------------------------
    def _send_json(self, obj, head: bool, repo: _Repo) -> None:
        body = json.dumps(obj).encode("utf-8")
        self._send(200, body, head, {"X-Repo-Commit": repo.sha}, content_type="application/json; charset=utf-8")

    def _send_error(self, e: _HubError, head: bool) -> None:
        headers = {"X-Error-Message": e.message}
        if e.code:
            headers["X-Error-Code"] = e.code
        if e.commit:
            headers["X-Repo-Commit"] = e.commit
        body = json.dumps({"error": e.message}).encode("utf-8")
        self._send(e.status, body, head, headers, content_type="application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, head: bool, headers: dict, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        self.wfile.flush()


class HubServer:
    """In-process fake Hub on ``127.0.0.1:<ephemeral port>``.

    ``repos`` maps repo ids (``"org/name"``) to ``{file path: bytes}``.  The server
    may be mutated while running (``add_repo``, ``set_file``, ``remove_file``,
    ``remove_repo``); each request sees a consistent snapshot of one repo.
    """

    def __init__(self, repos: dict[str, dict[str, bytes]] | None = None, host: str = "127.0.0.1"):
        self._lock = threading.Lock()
        self._repos: dict[str, _Repo] = {}
        self._faults: dict[tuple[str, str], list] = {}
        self._released = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self._host = host
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        for repo_id, files in (repos or {}).items():
            self.add_repo(repo_id, files)

    # --- repo contents ----------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes], *, sha: str | None = None) -> str:
        """Create or replace a repo; returns its commit sha."""
        repo = _Repo(repo_id, dict(files), sha)
        with self._lock:
            self._repos[repo_id] = repo
        return repo.sha

    def set_file(self, repo_id: str, path: str, content: bytes) -> str:
        """Add or replace one file (e.g. to corrupt it); returns the new commit sha.

        The sha is recomputed from the new contents unless it was pinned via
        ``add_repo(..., sha=...)``, in which case it stays the same.
        """
        with self._lock:
            old = self._repos[repo_id]
            files = dict(old.files)
            files[path] = content
            repo = _Repo(repo_id, files, old.sha if old.pinned_sha else None)
            self._repos[repo_id] = repo
        return repo.sha

    def remove_file(self, repo_id: str, path: str) -> str:
        with self._lock:
            old = self._repos[repo_id]
            files = {p: d for p, d in old.files.items() if p != path}
            repo = _Repo(repo_id, files, old.sha if old.pinned_sha else None)
            self._repos[repo_id] = repo
        return repo.sha

    def remove_repo(self, repo_id: str) -> None:
        with self._lock:
            self._repos.pop(repo_id, None)

    def commit_sha(self, repo_id: str) -> str:
        with self._lock:
            return self._repos[repo_id].sha

    def files(self, repo_id: str) -> dict[str, bytes]:
        with self._lock:
            return dict(self._repos[repo_id].files)

    def _get_repo(self, repo_id: str) -> _Repo | None:
        with self._lock:
            return self._repos.get(repo_id)

    # --- faults -----------------------------------------------------------------
    def interrupt(self, repo_id: str, path: str, at: int, times: int | None = 1, stall: bool = False) -> None:
        """Stop the next `times` GETs of a file (every one when None) at byte `at` of the file: cut the
        connection there, or with `stall` hold it open until `release()` or `stop()`."""
        with self._lock:
            self._faults[(repo_id, path)] = [at, times, stall]
            self._released.clear()

    def clear_faults(self) -> None:
        """Serve every file whole again."""
        with self._lock:
            self._faults.clear()

    def release(self) -> None:
        """Let stalled downloads end (their connections are then closed, short)."""
        self._released.set()

    def _take_interruption(self, repo_id: str, path: str) -> tuple[int, bool] | None:
        with self._lock:
            fault = self._faults.get((repo_id, path))
            if fault is None:
                return None
            at, times, stall = fault
            if times is not None:
                if times <= 1:
                    del self._faults[(repo_id, path)]
                else:
                    fault[1] = times - 1
            return at, stall

    # --- request log --------------------------------------------------------
    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- lifecycle -----------------------------------------------------------
    @property
    def port(self) -> int:
        """Bound port; still available after :meth:`stop` (e.g. to test a dead endpoint)."""
        if self._port is None:
            raise RuntimeError("HubServer was never started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> "HubServer":
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        httpd = ThreadingHTTPServer((self._host, 0), handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"HubServer:{httpd.server_address[1]}", daemon=True)
        thread.start()
        self._httpd, self._thread = httpd, thread
        self._port = httpd.server_address[1]
        return self

    def stop(self) -> None:
        self._released.set()
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):  # best effort
        try:
            self.stop()
        except Exception:
            pass
