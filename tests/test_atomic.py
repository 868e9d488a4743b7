import json
import os

import pytest

from cnnzoo import _atomic


def test_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "state.json"
    _atomic.write_json(path, {"a": 1})
    _atomic.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(os.listdir(path.parent)) == ["state.json"]  # no temporary left


def test_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    _atomic.write_json(path, {"a": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        _atomic.write_json(path, {"a": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_atomic_dir_success_and_refusal(tmp_path):
    target = tmp_path / "export"
    with _atomic.atomic_dir(target) as tmp:
        open(os.path.join(tmp, "f"), "w").write("one")
    assert (target / "f").read_text() == "one"
    with pytest.raises(ValueError, match="overwrite.*Received: path="):
        with _atomic.atomic_dir(target):
            pass
    with _atomic.atomic_dir(target, overwrite=True) as tmp:
        open(os.path.join(tmp, "g"), "w").write("two")
    assert sorted(os.listdir(target)) == ["g"]
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_atomic_dir_failure_leaves_old_folder(tmp_path):
    target = tmp_path / "export"
    with _atomic.atomic_dir(target) as tmp:
        open(os.path.join(tmp, "f"), "w").write("old")
    with pytest.raises(RuntimeError):
        with _atomic.atomic_dir(target, overwrite=True) as tmp:
            open(os.path.join(tmp, "f"), "w").write("half")
            raise RuntimeError("killed between write and rename")
    assert (target / "f").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["export"]
