"""Checkpoints load with weights_only=True: crafted or foreign files get a clear error, never run code."""

import os
import pickle

import pytest
import torch

from se3mol.checkpoint import CheckpointError, atomic_save, load_model, read_checkpoint
from tests.helpers import CodeRunningPickle as _Evil


def test_crafted_pickle_is_refused_and_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": _Evil()}, path)
    with pytest.raises(CheckpointError, match="not safe to load|not a readable"):
        read_checkpoint(path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_plain_pickle_and_garbage_are_refused(tmp_path):
    p = tmp_path / "plain.pt"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        read_checkpoint(p)
    g = tmp_path / "garbage.pt"
    g.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError):
        read_checkpoint(g)


def test_foreign_torch_file_and_other_format_version(tmp_path, tiny_checkpoint):
    p = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), p)
    with pytest.raises(CheckpointError, match="not an se3mol checkpoint"):
        read_checkpoint(p)
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["format_version"] = 999
    q = tmp_path / "future.pt"
    torch.save(ckpt, q)
    with pytest.raises(CheckpointError, match="format 999"):
        load_model(q)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        read_checkpoint(tmp_path / "nope.pt")


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.pt"
    atomic_save({"v": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"v": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temporary file left behind


def test_saved_files_get_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_save({"v": 1}, tmp_path / "x.pt")
    finally:
        os.umask(mask)
    assert (tmp_path / "x.pt").stat().st_mode & 0o777 == 0o644
