"""Keras Tuner's state survives kills: atomic files, reconciled reloads, SIGKILL resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.tuning_helpers import finish as _finish
from tests.tuning_helpers import make_oracle as _oracle


def _reloaded(folder, max_trials=3):
    oracle = _oracle(folder, max_trials)
    oracle.reload()
    return oracle


def _oracle_file(folder):
    return folder / "keras_tuner" / "oracle.json"


def test_kill_between_trial_file_and_oracle_file_reruns_the_trial(tmp_path):
    oracle = _oracle(tmp_path)
    oracle.save()
    before = _oracle_file(tmp_path).read_text()
    first = oracle.create_trial("tuner0")
    # The kill: trial_0/trial.json was written, oracle.json was not.
    _oracle_file(tmp_path).write_text(before)

    again = _reloaded(tmp_path)
    trial = again.create_trial("tuner0")
    assert trial.trial_id == first.trial_id == "0"
    assert trial.hyperparameters.values == first.hyperparameters.values
    _finish(again, trial)
    assert again.create_trial("tuner1").trial_id == "1"


def test_kill_after_a_trial_finished_keeps_it(tmp_path):
    oracle = _oracle(tmp_path)
    trial = oracle.create_trial("tuner0")
    before = _oracle_file(tmp_path).read_text()  # the trial is still ongoing here
    _finish(oracle, trial)
    # The kill: trial_0/trial.json says COMPLETED, oracle.json was not updated.
    _oracle_file(tmp_path).write_text(before)

    again = _reloaded(tmp_path)
    assert again.interrupted_trials() == []
    assert again.end_order == ["0"]
    assert again.create_trial("tuner0").trial_id == "1"
    assert again.get_best_trials(1)[0].trial_id == "0"


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    oracle = _oracle(tmp_path)
    trial = oracle.create_trial("tuner0")
    before = _oracle_file(tmp_path).read_text()
    oracle.end_order.append(trial.trial_id)  # a change the next save would record

    def killed(fd):
        raise KeyboardInterrupt  # the process dies with the new bytes half on disk

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        oracle.save()
    monkeypatch.undo()
    assert _oracle_file(tmp_path).read_text() == before
    assert not [p for p in (tmp_path / "keras_tuner").iterdir() if p.name.endswith(".tmp")]


def test_a_worker_started_again_with_its_id_gets_its_trial_back(tmp_path):
    oracle = _oracle(tmp_path)
    mine = oracle.create_trial("worker1")
    other = oracle.create_trial("worker2")
    assert other.trial_id != mine.trial_id
    assert oracle.create_trial("worker1").trial_id == mine.trial_id


def test_a_restarted_chief_hands_running_trials_out_again(tmp_path):
    oracle = _oracle(tmp_path)
    running = oracle.create_trial("worker1")
    again = _reloaded(tmp_path)
    assert again.interrupted_trials() == [running.trial_id]
    assert again.create_trial("worker2").trial_id == running.trial_id
    # The first worker, still alive, reports it: it is settled, not queued twice.
    _finish(again, again.trials[running.trial_id])
    assert again.interrupted_trials() == []


SEARCH = textwrap.dedent("""
    import sys, tuning
    tuning.search(out=sys.argv[1], max_trials=3, epochs=2, num_samples=150, batch_size=35,
                  precision="float32", export=False)
""")


def test_resume_after_sigkill(tmp_path):
    out = tmp_path / "search"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", SEARCH, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    lines = []
    try:
        deadline = time.monotonic() + 240
        # Kill in the middle of the second trial, after the first finished.
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Trial 2/3:"):
                time.sleep(0.5)
                break
            assert time.monotonic() < deadline, "".join(lines)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert any(line.startswith("Trial 1/3 done") for line in lines), "".join(lines)
    first = json.loads((out / "keras_tuner" / "trial_0" / "trial.json").read_text())
    assert first["status"] == "COMPLETED"
    for path in (out / "keras_tuner").rglob("*.json"):  # nothing left truncated
        json.loads(path.read_text())

    import tuning

    # At least two trials started (the second perhaps to run again): a
    # budget of one is refused, not exceeded ("Trial 2/1"). The killed
    # search's lock went with its process.
    started = len(list((out / "keras_tuner").glob("trial_*/trial.json")))
    assert started >= 2
    with pytest.raises(ValueError, match=f"at least the {started} trials.*max_trials=1"):
        tuning.search(out=out, max_trials=1, epochs=2, num_samples=150, batch_size=35,
                      precision="float32", export=False, quiet=True)
    result = tuning.search(out=out, max_trials=3, epochs=2, num_samples=150, batch_size=35,
                           precision="float32", export=False, quiet=True)
    assert result.resumed
    assert sorted(r["trial_id"] for r in result.trials) == ["0", "1", "2"]
    assert all(r["status"] == "COMPLETED" for r in result.trials)
    kept = next(r for r in result.trials if r["trial_id"] == "0")
    assert kept["score"] == pytest.approx(first["score"])  # not trained again
