"""Checkpoint files: round trip, integrity checks, no code execution, atomic replacement."""

import os
import pickle

import pytest
import torch

from meshgnn.errors import UserError
from meshgnn.training.checkpoint import load_checkpoint, save_checkpoint


def payload():
    return {"epoch": 3, "global_step": 30, "model": {"w": torch.randn(4, 4), "b": torch.zeros(4)},
            "rng": {"python": (3, tuple(range(5)), None)}, "metrics": {"val/loss/total": 0.5},
            "config_yaml": "a: 1\n"}


def test_round_trip_and_plain_torch_load_with_weights_only(tmp_path):
    path = tmp_path / "last.ckpt"
    data = payload()
    save_checkpoint(data, path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], data["model"]["w"]) and loaded["epoch"] == 3
    plain = torch.load(path, weights_only=True)
    assert plain["format"] == "meshgnn-checkpoint" and len(plain["checksum"]) == 64


def _one_line_error(path, needle):
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and needle in message and "\n" not in message
    return message


def test_truncated_file(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint(payload(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _one_line_error(path, "truncated or corrupt")


def test_bit_flip_is_caught_by_the_checksum(tmp_path):
    path = tmp_path / "last.ckpt"
    data = payload()
    data["model"]["w"] = torch.ones(64, 64)
    save_checkpoint(data, path)
    raw = bytearray(path.read_bytes())
    # flip one bit inside the tensor data (the 64x64 float block of ones)
    marker = raw.find(torch.ones(1).numpy().tobytes() * 8)
    raw[marker + 5] ^= 0x01
    path.write_bytes(bytes(raw))
    message = _one_line_error(path, str(path))
    assert "checksum" in message or "corrupt" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.ckpt"
    path.write_bytes(b"")
    _one_line_error(path, "empty")


def test_foreign_files(tmp_path):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    _one_line_error(other, "not a meshgnn checkpoint")
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    _one_line_error(text, "truncated or corrupt")
    _one_line_error(tmp_path / "missing.ckpt", "not found")


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


def test_pickle_that_carries_code_never_runs(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"format": "meshgnn-checkpoint", "payload": RunsCode()}, evil)
    _one_line_error(evil, "refused")
    assert not MARKER.exists()
    raw_pickle = tmp_path / "raw.ckpt"
    raw_pickle.write_bytes(pickle.dumps(RunsCode()))
    with pytest.raises(UserError):
        load_checkpoint(raw_pickle)
    assert not MARKER.exists()


def test_a_crash_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(payload(), path)
    before = path.read_bytes()

    def crash(fd):
        raise KeyboardInterrupt  # a kill after the bytes are written, before fsync and rename

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({**payload(), "epoch": 4}, path)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind
