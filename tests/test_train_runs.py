"""cnnzoo.train: a finished run extended with more epochs, and `overwrite`, as Keras's do."""

import csv
import json
import os

import numpy as np
import pytest

from cnnzoo import cli
from cnnzoo import train as T

# Small and fast: 300 digits, float32 so results do not depend on bf16 hardware.
KW = dict(data="digits", num_samples=300, batch_size=64, precision="float32", verbose=0)
ARGV = ["--data", "digits", "--num-samples", "300", "--batch-size", "64", "--precision",
        "float32", "--verbose", "0"]


def _history(run_dir):
    with open(os.path.join(run_dir, T.HISTORY_FILE)) as f:
        return list(csv.DictReader(f))


def _record(run_dir):
    return json.loads((run_dir / T.RUN_FILE).read_text())


def test_an_extended_run_equals_an_uninterrupted_one(tmp_path, capsys):
    # Dropout (its seed states are in the checkpoint) and a warm-up before a
    # constant rate (the step count is in the optimizer's variables).
    kw = dict(dropout_rate=0.5, warmup_epochs=1, **KW)
    out = tmp_path / "run"
    T.train("simple_cnn", out=out, epochs=2, **kw)
    assert _record(out)["status"] == "complete"
    # From the command line, as a user extends it: 2 more epochs.
    code = cli.main(["train", "--out", str(out), "--epochs", "4", "--dropout-rate", "0.5",
                     "--warmup-epochs", "1", *ARGV])
    assert code == 0, capsys.readouterr().err
    whole = T.train("simple_cnn", out=tmp_path / "whole", epochs=4, **kw)

    assert _history(out) == _history(tmp_path / "whole")  # every metric and learning rate
    record, expected = _record(out), _record(tmp_path / "whole")
    assert record["config"] == expected["config"] and record["config"]["epochs"] == 4
    for key in ("status", "epochs_run", "best_epoch", "stopped_early", "metrics", "history"):
        assert record[key] == expected[key], key
    assert record["resumed_at_epochs"] == [2]
    # The best model is the uninterrupted run's, to the last bit.
    again = T.train("simple_cnn", out=out, epochs=4, **kw)
    assert again.resumed_from == 4
    for a, b in zip(again.model.weights, whole.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert len(os.listdir(out / T.CHECKPOINT_DIR)) <= 2  # disk use stays bounded

    # Fewer epochs than the run's, and another change beside the epochs: refused.
    with pytest.raises(ValueError, match=r"at least the 4 .* Received: epochs=3$"):
        T.train("simple_cnn", out=out, epochs=3, **kw)
    with pytest.raises(ValueError, match=r"\(dropout_rate: 0\.5 -> 0\.25, epochs: 4 -> 5\)"):
        T.train("simple_cnn", out=out, epochs=5, **{**kw, "dropout_rate": 0.25})
    # A run finished before checkpoints were kept cannot be extended; it still reruns.
    for name in os.listdir(out / T.CHECKPOINT_DIR):
        os.unlink(out / T.CHECKPOINT_DIR / name)
    with pytest.raises(ValueError, match="kept no checkpoint to extend from"):
        T.train("simple_cnn", out=out, epochs=5, **kw)
    assert T.train("simple_cnn", out=out, epochs=4, **kw).test_metrics == whole.test_metrics


def test_a_schedule_over_the_epochs_is_not_extended_and_overwrite_starts_afresh(tmp_path,
                                                                                capsys):
    out = tmp_path / "run"
    T.train("simple_cnn", out=out, epochs=1, schedule="cosine", **KW)
    (out / "notes.txt").write_text("mine")
    (out / T.LOG_DIR / "mine.txt").write_text("mine too")
    before = (out / T.RUN_FILE).read_text()
    with pytest.raises(ValueError) as error:
        T.train("simple_cnn", out=out, epochs=2, schedule="cosine", **KW)
    message = str(error.value)
    assert "\n" not in message and "cosine" in message and "--overwrite" in message
    assert message.endswith("Received: epochs=2")
    assert (out / T.RUN_FILE).read_text() == before  # nothing touched

    # --overwrite: the 2-epoch run afresh, with another configuration too.
    code = cli.main(["train", "--out", str(out), "--epochs", "2", "--schedule", "cosine",
                     "--seed", "1", "--overwrite", *ARGV])
    assert code == 0, capsys.readouterr().err
    record = _record(out)
    assert record["resumed_at_epochs"] == [] and record["config"]["seed"] == 1
    assert [row["epoch"] for row in _history(out)] == ["1", "2"]
    fresh = T.train("simple_cnn", out=tmp_path / "fresh", epochs=2, schedule="cosine",
                    seed=1, **KW)
    assert record["metrics"]["test"] == fresh.test_metrics
    # Only what a run writes went: the user's files stay, and one run's event files.
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / T.LOG_DIR / "mine.txt").read_text() == "mine too"
    events = [f for _, _, fs in os.walk(out / T.LOG_DIR) for f in fs if "tfevents" in f]
    expected = [f for _, _, fs in os.walk(tmp_path / "fresh" / T.LOG_DIR)
                for f in fs if "tfevents" in f]
    assert len(events) == len(expected)
    # A folder holding no run is not taken for one, overwrite or not.
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.keras").write_text("not a run's")
    (other / "data.csv").write_text("x")
    with pytest.raises(ValueError, match="holds no cnnzoo run"):
        T.train("simple_cnn", out=other, epochs=1, overwrite=True, **KW)
    assert sorted(os.listdir(other)) == ["data.csv", "model.keras"]


def test_a_run_early_stopping_ended_has_nothing_to_extend(tmp_path, capsys):
    # A rate this large makes the validation loss climb after the first epochs
    # (as in test_train's early-stopping test).
    out = tmp_path / "run"
    kw = dict(patience=1, learning_rate=0.3, **{**KW, "verbose": 2})
    first = T.train("simple_cnn", out=out, epochs=12, **kw)
    assert first.stopped_early and first.epochs_run < 12
    before = (out / T.RUN_FILE).read_text()
    capsys.readouterr()
    again = T.train("simple_cnn", out=out, epochs=20, **kw)
    text = capsys.readouterr().out
    assert f"stopped early after epoch {first.epochs_run} of 12" in text
    assert "nothing to extend" in text and "Epoch" not in text  # not trained
    assert again.history == first.history and again.test_metrics == first.test_metrics
    assert (out / T.RUN_FILE).read_text() == before
