"""cnnzoo.train: artefacts, early stopping, determinism, resume after SIGKILL, bad input."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from cnnzoo import cli
from cnnzoo import train as T
from tests.helpers import kill_at, train_in_fresh_process

# Small and fast: 300 digits, float32 so results do not depend on bf16 hardware.
KW = dict(data="digits", num_samples=300, batch_size=64, precision="float32", verbose=0)


def _history(run_dir):
    with open(os.path.join(run_dir, T.HISTORY_FILE)) as f:
        return list(csv.DictReader(f))


def test_run_artefacts_and_rerun(tmp_path):
    out = tmp_path / "run"
    result = T.train("simple_cnn", out=out, epochs=3, **KW)
    files = sorted(os.listdir(out))
    assert files == sorted([T.RUN_FILE, T.MODEL_FILE, T.HISTORY_FILE, T.CURVES_FILE, T.LOG_DIR,
                            T.CHECKPOINT_DIR])
    record = json.loads((out / T.RUN_FILE).read_text())
    assert record["status"] == "complete" and record["class_names"] == [str(i) for i in range(10)]
    assert record["config"]["model"] == "simple_cnn" and record["config"]["seed"] == 0
    assert len(_history(out)) == 3 == result.epochs_run
    assert (out / T.CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = [f for _, _, fs in os.walk(out / T.LOG_DIR) for f in fs if "tfevents" in f]
    assert events
    # model.keras holds the best epoch: its test metrics are the recorded ones.
    model = keras.saving.load_model(out / T.MODEL_FILE, safe_mode=True)
    from cnnzoo.data import load_dataset

    ds = load_dataset("digits", num_samples=300, seed=0)
    got = model.evaluate(ds.x_test, ds.y_test, batch_size=64, verbose=0, return_dict=True)
    assert got["accuracy"] == pytest.approx(result.test_metrics["accuracy"], abs=1e-6)
    assert got["loss"] == pytest.approx(result.test_metrics["loss"], rel=1e-5)
    assert record["metrics"]["test"] == result.test_metrics
    # The same command again does not retrain.
    again = T.train("simple_cnn", out=out, epochs=3, **KW)
    assert again.resumed_from == 3 and again.test_metrics == result.test_metrics
    # A different configuration in the same folder is refused, naming the difference.
    with pytest.raises(ValueError, match=r"different configuration \(seed: 0 -> 1\)"):
        T.train("simple_cnn", out=out, epochs=3, seed=1, **KW)
    # model.keras gets the permissions of any other file written (mkstemp's are 0600).
    umask = os.umask(0)
    os.umask(umask)
    assert (out / T.MODEL_FILE).stat().st_mode & 0o777 == 0o666 & ~umask
    assert (out / T.RUN_FILE).stat().st_mode & 0o777 == 0o666 & ~umask
    # A moved run folder is read where it is now (run.json's paths are where it was).
    moved = tmp_path / "moved"
    os.replace(out, moved)
    again = T.train("simple_cnn", out=moved, epochs=3, **KW)
    assert again.paths["model"] == str(moved / T.MODEL_FILE)
    assert again.test_metrics == result.test_metrics
    assert str(moved) in T.summary_text(again) and str(out) + os.sep not in T.summary_text(again)
    # A bad knob is named as such, not as a difference from the run in the folder.
    with pytest.raises(ValueError, match=r"in \[0.0, 1.0\)\. Received: dropout_rate=1.5"):
        T.train("simple_cnn", out=moved, epochs=3, dropout_rate=1.5, **KW)


def test_a_first_run_killed_before_its_record_resumes(tmp_path):
    # A kill between the checkpoint folder and the first run.json leaves both
    # of these: the same command must start the run, not refuse the folder.
    out = tmp_path / "run"
    (out / T.CHECKPOINT_DIR).mkdir(parents=True)
    (out / f".{T.RUN_FILE}.k0x9vgc.tmp").write_text('{"status": "runn')
    result = T.train("simple_cnn", out=out, epochs=1, **KW)
    assert result.epochs_run == 1
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    # Anything else in the folder is still not taken for a run.
    other = tmp_path / "other"
    (other / T.CHECKPOINT_DIR).mkdir(parents=True)
    (other / T.CHECKPOINT_DIR / "mine.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no cnnzoo run"):
        T.train("simple_cnn", out=other, epochs=1, **KW)


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    # A learning rate this large makes the validation loss climb after the first epochs.
    result = T.train("simple_cnn", out=tmp_path / "run", epochs=12, patience=1,
                     learning_rate=0.3, **KW)
    val_loss = result.history["val_loss"]
    assert result.stopped_early and result.epochs_run < 12
    assert result.best_epoch == int(np.argmin(val_loss)) + 1
    assert result.epochs_run == result.best_epoch + 1  # patience 1
    from cnnzoo.data import load_dataset

    ds = load_dataset("digits", num_samples=300, seed=0)
    got = result.model.evaluate(ds.x_val, ds.y_val, batch_size=64, verbose=0)[0]
    assert got == pytest.approx(min(val_loss), rel=1e-4)


_SCRIPT = textwrap.dedent("""
    import sys
    from cnnzoo import train
    train.train("simple_cnn", "digits", out=sys.argv[1], epochs=3, num_samples=300,
                batch_size=64, precision="float32", dropout_rate=0.5, verbose=0)
""")


def test_fresh_process_reruns_a_finished_run_of_cnnzoo_layers(tmp_path):
    # The model file holds cnnzoo's own layers, which a fresh process has not
    # imported (registered) when it reads the finished run back.
    out = tmp_path / "run"
    result = T.train("simple_cnn", out=out, epochs=1, implementation="primitive", **KW)
    printed = train_in_fresh_process(out, epochs=1, implementation="primitive", **KW)
    assert printed.split()[0] == "1"
    assert printed.endswith(str(result.test_metrics))


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    """Killed after epoch 1, resumed in a new process, equal to a run in this process.

    This is also the determinism check: the same seed in two processes gives the
    same history and test metrics, to the last bit.
    """
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "killed"
    env = kill_at([script, out], out / T.CHECKPOINT_DIR / "epoch-0001.npz", timeout=240)
    record = json.loads((out / T.RUN_FILE).read_text())
    assert record["status"] == "running"
    assert not (out / T.MODEL_FILE).exists()

    # The same command again finishes the run from epoch 1 (or later).
    done = subprocess.run([sys.executable, str(script), str(out)], env=env,
                          capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    record = json.loads((out / T.RUN_FILE).read_text())
    assert record["status"] == "complete" and record["resumed_at_epochs"][0] >= 1
    # Kept to extend the run: the last epoch's checkpoint and the best one's, at most.
    kept = os.listdir(out / T.CHECKPOINT_DIR)
    assert "epoch-0003.npz" in kept and len(kept) <= 2

    # Uninterrupted, in this process: the same history and test metrics.
    whole = T.train("simple_cnn", out=tmp_path / "whole", epochs=3, dropout_rate=0.5, **KW)
    assert _history(out) == _history(tmp_path / "whole")
    assert record["metrics"]["test"] == whole.test_metrics


def test_bad_input_leaves_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"bad\.npz.*corrupt or truncated"):
        T.train("simple_cnn", str(bad), out=out, epochs=1, verbose=0)
    assert not out.exists()
    code = cli.main(["train", "--data", str(bad), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "bad.npz" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    for kwargs, message in [({"epochs": 0}, "epochs"), ({"validation_split": 0.0}, "validation"),
                            ({"dropout_rate": 1.0}, "dropout_rate"),
                            ({"activation": "relux"}, "activation")]:
        with pytest.raises(ValueError, match=message):
            T.train("simple_cnn", "digits", out=out, num_samples=60, verbose=0, **kwargs)
        assert not out.exists()
    # A folder of images of two sizes: the one-line error names the odd file.
    from PIL import Image

    for i, size in enumerate([(8, 8), (8, 8), (9, 8)]):
        (tmp_path / "imgs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("L", size, 50).save(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png")
    code = cli.main(["train", "--data", str(tmp_path / "imgs"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "2.png is 8x9" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no cnnzoo run"):
        T.train("simple_cnn", "digits", out=other, epochs=1, verbose=0)
    assert os.listdir(other) == ["notes.txt"]


def test_a_run_without_tensorflow_keeps_everything_but_tensorboard(tmp_path, monkeypatch):
    # Keras's TensorBoard callback needs TensorFlow: on JAX without it, a run
    # failed in fit() and was left unfinished.
    monkeypatch.setattr(T, "_has_tensorflow", lambda: False)
    result = T.train("simple_cnn", out=tmp_path / "run", epochs=1, **KW)
    assert sorted(os.listdir(tmp_path / "run")) == sorted(
        [T.RUN_FILE, T.MODEL_FILE, T.HISTORY_FILE, T.CURVES_FILE, T.CHECKPOINT_DIR])
    assert "tensorboard" not in T.summary_text(result)


def test_cli_skip_bad_images_trains_on_the_rest(tmp_path, capsys):
    from PIL import Image

    for i in range(12):
        (tmp_path / "imgs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 40 + 150 * (i % 2)).save(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png")
    (tmp_path / "imgs" / "c0" / "bad.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "imgs"), "--out", str(out), "--epochs", "1",
            "--precision", "float32", "--verbose", "0"]
    assert cli.main(argv) == 2 and "bad.png" in capsys.readouterr().err and not out.exists()
    assert cli.main(argv + ["--skip-bad-images"]) == 0
    assert "Skipped 1 unreadable image file(s)" in capsys.readouterr().err
    with open(out / "run.json") as f:
        assert json.load(f)["config"]["data"]["skipped_images"] == [os.path.join("c0", "bad.png")]
