"""Loading a card verifies its weights once: one sha256 read and one scan for non-finite values (issue 24)."""
from __future__ import annotations

import zoo
import zoo.api
import zoo.weights


def test_a_load_hashes_and_scans_its_weights_once(monkeypatch, tmp_path):
    import hashlib
    reads, scans = [], []
    monkeypatch.setattr(zoo.weights, "_HASHES", {})

    class Counting:
        @staticmethod
        def sha256(*a):
            reads.append(1)
            return hashlib.sha256(*a)

    monkeypatch.setattr(zoo.weights, "hashlib", Counting)
    real_check = zoo.api.check_state
    monkeypatch.setattr(zoo.api, "check_state", lambda *a, **k: (scans.append(1), real_check(*a, **k))[1])
    real_into_check = zoo.weights.check_state
    monkeypatch.setattr(zoo.weights, "check_state", lambda *a, **k: (scans.append(1), real_into_check(*a, **k))[1])
    zoo.load("made-mnist-bin")
    assert (len(reads), len(scans)) == (1, 1)
    zoo.load("made-mnist-bin")  # the file has not changed: not read again
    assert len(reads) == 1
    # a changed file is read again (and refused when it no longer matches the card)
    copy = tmp_path / "w.safetensors"
    copy.write_bytes(zoo.get_card("made-mnist-bin").weights_path().read_bytes())
    assert zoo.weights.sha256_file(copy) == zoo.get_card("made-mnist-bin").sha256
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    assert zoo.weights.sha256_file(copy) != zoo.get_card("made-mnist-bin").sha256
