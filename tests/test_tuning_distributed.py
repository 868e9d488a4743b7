"""A distributed search on loopback: a chief and workers, Keras Tuner's gRPC oracle."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tests.tuning_helpers import finish as _finish
from tests.tuning_helpers import make_oracle as _oracle

TRIALS = 6
ARGS = ["--max-trials", str(TRIALS), "--epochs", "1", "--num-samples", "120", "--batch-size", "42",
        "--precision", "float32", "--no-export"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, out, **env_vars):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", **env_vars)
    return subprocess.Popen([sys.executable, "-m", "cnnzoo", "tune", "--out", str(out),
                             *ARGS, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _ran(log, worker):
    """The trials the worker's log says it ran and scored."""
    began = {int(n) for n in re.findall(rf"^{worker} runs trial (\d+)/{TRIALS}:", log, re.MULTILINE)}
    scored = {int(n) for n in re.findall(
        rf"^{worker} finished trial (\d+): val_accuracy=[01]\.\d{{4}}$", log, re.MULTILINE)}
    assert began == scored, log
    return began


def _chief_and_two_workers(out, *args):
    """A chief and workers 1 and 2 on loopback, sharing `out`; returns `(procs, logs, every)`.

    Worker 2 starts once worker 1 is about to ask for trials, so that worker
    1 gets some whatever the machine's load. Worker 2 may then find the
    search over (its start-up takes seconds); it ends at once.
    """
    address = f"127.0.0.1:{_free_port()}"
    procs = {"chief": _start(["--chief", address, *args], out)}
    procs["worker1"] = _start(["--worker", "1", "--chief", address, *args], out)
    logs = {"worker1": ""}
    try:
        for line in procs["worker1"].stdout:  # ends at exit if the line never comes
            logs["worker1"] += line
            if line.startswith("worker1: asking the chief"):
                break
        procs["worker2"] = _start(["--worker", "2", "--chief", address, *args], out)
        for name, proc in procs.items():
            rest, _ = proc.communicate(timeout=300)
            logs[name] = logs.get(name, "") + rest
    finally:
        for proc in procs.values():
            proc.kill()
    every = "\n".join(f"== {k}\n{v}" for k, v in logs.items())
    assert all(p.returncode == 0 for p in procs.values()), every
    assert f"Chief listening on {address}" in logs["chief"], every
    assert f"Chief: search complete ({TRIALS} trials)." in logs["chief"], every
    one, two = _ran(logs["worker1"], "worker1"), _ran(logs["worker2"], "worker2")
    assert one.isdisjoint(two), every
    assert one | two == set(range(1, TRIALS + 1)), every
    for name in ("worker1", "worker2"):
        assert f"{name}: search over" in logs[name], every
    saved = json.loads((out / "results.json").read_text())
    assert sorted(t["trial"] for t in saved["trials"]) == list(range(1, TRIALS + 1))
    assert all(t["status"] == "COMPLETED" for t in saved["trials"])
    return procs, logs, every


def test_chief_and_two_workers_on_loopback(tmp_path):
    """Two workers share the trials; each runs one at a time."""
    out = tmp_path / "shared"  # one folder for all: the results folder of several machines
    _chief_and_two_workers(out)
    saved = json.loads((out / "results.json").read_text())
    assert saved["search"]["role"] == "chief"
    assert all(0 <= t["val_accuracy"] <= 1 for t in saved["trials"])


def test_workers_from_weights_share_one_features_file(tmp_path):
    """Each worker computes the frozen backbone's features or reads them from the shared folder."""
    from tests.helpers import save_torch, torch_state

    weights = save_torch(torch_state("resnet18"), tmp_path / "r18.safetensors")
    out = tmp_path / "shared"
    _, logs, every = _chief_and_two_workers(
        out, "--model", "resnet18", "--data", "shapes", "--image-size", "32", "--input-size",
        "32", "--weights", weights)
    assert len(list((out / "features").glob("*.npz"))) == 1, every
    for name in ("worker1", "worker2"):
        assert re.search(r"^Features: the frozen backbone's outputs \(512 per image\) for \d+ "
                         r"train \+ \d+ validation images, (computed|read)", logs[name],
                         re.MULTILINE), every
    saved = json.loads((out / "results.json").read_text())
    assert {tuple(t["values"]) for t in saved["trials"]} == {("dropout_rate",)}


def _kill_a_worker_then(tmp_path, chief_args, name, worker_args, **env_vars):
    """A chief and `--worker 1`, SIGKILLed once its first trial began; then worker `name`.

    Returns `(procs, logs, out, every)` once the chief and worker `name`
    (`worker_args`, with the chief's address) have ended. The chief and
    worker `name` get `env_vars`.
    """
    out = tmp_path / "shared"
    address = f"127.0.0.1:{_free_port()}"
    procs = {"chief": _start(["--chief", address, *chief_args], out, **env_vars),
             "killed": _start(["--worker", "1", "--chief", address], out)}
    logs = {"killed": ""}
    try:
        for line in procs["killed"].stdout:
            logs["killed"] += line
            if "worker1 runs trial" in logs["killed"]:  # its trial began
                procs["killed"].kill()
                break
        procs["killed"].wait(timeout=60)
        procs[name] = _start([*worker_args, "--chief", address], out, **env_vars)
        for key in (name, "chief"):
            logs[key], _ = procs[key].communicate(timeout=300)
    finally:
        for proc in procs.values():
            proc.kill()
    return procs, logs, out, "\n".join(f"== {k}\n{v}" for k, v in logs.items())


def test_a_killed_worker_restarted_with_its_id_finishes_its_trial(tmp_path):
    """SIGKILL a worker mid-trial; the same `--worker 1` gets its trial back.

    The chief keeps each tuner ID's ongoing trial for that ID until
    `--worker-timeout` (default 300 s) passes without word of it; a worker
    that restarts sooner gets it back first.
    """
    procs, logs, out, every = _kill_a_worker_then(
        tmp_path, [], "restarted", ["--worker", "1"])
    assert procs["killed"].returncode == -9, every
    assert procs["chief"].returncode == 0 and procs["restarted"].returncode == 0, every
    assert "worker1 finished" not in logs["killed"], every
    killed = {int(n) for n in re.findall(r"^worker1 runs trial (\d+)/", logs["killed"], re.MULTILINE)}
    assert len(killed) == 1, every
    restarted = re.findall(r"^worker1 runs trial (\d+)/", logs["restarted"], re.MULTILINE)
    assert {int(n) for n in restarted[:1]} == killed, every  # handed back first
    assert _ran(logs["restarted"], "worker1") == set(range(1, TRIALS + 1)), every
    assert f"Chief: search complete ({TRIALS} trials)." in logs["chief"], every
    saved = json.loads((out / "results.json").read_text())
    assert [t["status"] for t in saved["trials"]] == ["COMPLETED"] * TRIALS


def test_a_killed_workers_trials_go_to_another_worker_after_the_timeout(tmp_path):
    """SIGKILL worker 1 mid-trial and never restart it: worker 2 runs everything.

    Worker 2 beats every second; the chief gives a trial up after 8 s of
    silence. Worker 2 runs the trials left, is told to wait (not to stop)
    while worker 1's trial is held, then gets it.
    """
    procs, logs, out, every = _kill_a_worker_then(
        tmp_path, ["--worker-timeout", "8"], "other", ["--worker", "2"], CNNZOO_HEARTBEAT_S="1")
    assert procs["killed"].returncode == -9, every
    assert procs["chief"].returncode == 0 and procs["other"].returncode == 0, every
    killed = {int(n) for n in re.findall(r"^worker1 runs trial (\d+)/", logs["killed"], re.MULTILINE)}
    assert len(killed) == 1, every
    assert re.search(r"^Chief: nothing heard from worker1 on trial \d+ for \d+ s; "
                     r"handing it to the next worker that asks\.$", logs["chief"],
                     re.MULTILINE), every
    assert _ran(logs["other"], "worker2") == set(range(1, TRIALS + 1)), every
    assert f"Chief: search complete ({TRIALS} trials)." in logs["chief"], every
    saved = json.loads((out / "results.json").read_text())
    assert [t["status"] for t in saved["trials"]] == ["COMPLETED"] * TRIALS


def test_local_workers_share_the_trials(tmp_path):
    """`workers=2` (`cnnzoo tune --workers 2`): the chief here, two worker processes."""
    import tuning

    out = tmp_path / "s"
    result = tuning.search(out=out, workers=2, max_trials=TRIALS, epochs=1, num_samples=120,
                           batch_size=42, precision="float32", export=False, quiet=True)
    assert result.role == "chief"
    assert [t["status"] for t in result.trials] == ["COMPLETED"] * TRIALS
    logs = {i: (out / "workers" / f"worker_{i}.log").read_text() for i in (1, 2)}
    every = "\n".join(f"== worker{i}\n{text}" for i, text in logs.items())
    one, two = _ran(logs[1], "worker1"), _ran(logs[2], "worker2")
    assert one.isdisjoint(two) and one | two == set(range(1, TRIALS + 1)), every
    assert all(f"worker{i}: search over" in logs[i] for i in (1, 2)), every


@pytest.mark.parametrize("kwargs", [{"workers": 0}, {"workers": 2, "chief": "127.0.0.1:1"}])
def test_bad_local_workers_are_refused(tmp_path, kwargs):
    import tuning

    with pytest.raises(ValueError, match=f"Received: workers={kwargs['workers']}$"):
        tuning.search(out=tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


def test_a_worker_without_a_chief_ends_by_itself(tmp_path, monkeypatch):
    import tuning
    from tuning import distributed
    from tuning.tuners import SearchFailedError

    monkeypatch.setattr(distributed, "WORKER_WAIT_S", 2)
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(SearchFailedError, match=f"chief at {address} did not answer"):
        tuning.search(out=tmp_path, worker="7", chief=address, num_samples=60, epochs=1,
                      precision="float32", quiet=True)
    assert "KERASTUNER_TUNER_ID" not in os.environ  # the role ends with the search


def test_a_worker_started_after_the_search_is_over_ends_at_once(tmp_path, monkeypatch):
    """Every trial in the shared folder has ended and no chief answers: no wait."""
    import io

    import tuning
    from tuning import distributed

    common = {"out": tmp_path, "max_trials": 2, "epochs": 1, "num_samples": 60,
              "precision": "float32", "export": False, "quiet": True}
    tuning.search(**common)  # a finished search in the shared folder
    # Were the check missing, the worker would wait this long and then fail.
    monkeypatch.setattr(distributed, "WORKER_WAIT_S", 300)
    stream = io.StringIO()
    result = tuning.search(worker="7", chief=f"127.0.0.1:{_free_port()}", stream=stream,
                           **{**common, "quiet": False})
    assert result.role == "worker"
    assert f"worker7: the search in {tmp_path} is over (all 2 trials ended)" in \
        stream.getvalue()
    assert "worker7: search over; ran trials none" in stream.getvalue()


def test_a_worker_with_other_settings_is_refused_once_the_chief_answers(tmp_path):
    """A worker checks its settings against the chief's `search.json`.

    Another model or epochs used to train trials of another search into the
    chief's table. The worker reads the file once the chief answers: the
    chief writes it before it serves, so it is this search's. A worker's
    `--overwrite` is ignored: it used to delete the shared state.
    """
    import tuning

    out = tmp_path / "shared"
    address = f"127.0.0.1:{_free_port()}"
    chief = _start(["--chief", address], out)
    try:
        with pytest.raises(ValueError, match=r"chief's search in this folder has other settings "
                                             r"\(epochs: 1 -> 2\).*Received: out="):
            tuning.search(out=out, worker="1", chief=address, max_trials=TRIALS, epochs=2,
                          num_samples=120, batch_size=42, precision="float32", export=False,
                          quiet=True, overwrite=True)
        assert (out / "keras_tuner" / "oracle.json").exists()  # not deleted
        assert json.loads((out / "search.json").read_text())["epochs"] == 1
    finally:
        chief.kill()
        chief.communicate()


# -- a worker that dies and does not come back ------------------------------------


def test_the_chief_hands_a_silent_workers_trial_to_another(tmp_path):
    from tuning import _compat_keras_tuner as compat
    from tuning import distributed

    oracle = _oracle(tmp_path)
    now = [0.0]
    liveness = distributed.Liveness(oracle, timeout=10, clock=lambda: now[0])
    a1, b, a2 = (oracle.create_trial(t) for t in ("workerA", "workerB", "workerC"))
    assert [t.status for t in (a1, b, a2)] == ["RUNNING"] * 3
    now[0] = 6.0
    _finish(oracle, b)
    # Every trial is handed out, two still run: worker B is told to wait,
    # not to stop, and the search is not over.
    assert oracle.create_trial("workerB").status == "IDLE"
    assert not distributed._search_over(oracle)
    now[0] = 9.0
    oracle.get_trial(a2.trial_id)  # workerC's heartbeat (its process lives)
    now[0] = 10.5
    assert liveness.check() == [("workerA", a1.trial_id, 10.5)]
    assert a1.trial_id in compat.retry_queue(oracle) and "workerA" not in oracle.tuner_ids
    assert liveness.check() == []  # once
    # The silent worker's trial goes to the next worker that asks.
    again = oracle.create_trial("workerB")
    assert (again.trial_id, again.status) == (a1.trial_id, "RUNNING")
    now[0] = 20.0
    oracle.update_trial(again.trial_id, {"val_accuracy": 0.5}, step=0)  # B's first epoch
    now[0] = 25.0
    assert liveness.check() == [("workerC", a2.trial_id, 16.0)]
    # The first worker was slow, not dead: it ends its trial after all, and
    # it is not run again.
    _finish(oracle, a2)
    assert compat.retry_queue(oracle) == []
    _finish(oracle, again)
    assert oracle.create_trial("workerB").status == "STOPPED"
    assert distributed._search_over(oracle)
    assert sorted(t.status for t in oracle.trials.values()) == ["COMPLETED"] * 3


def test_without_a_timeout_the_chief_waits(tmp_path):
    from tuning import distributed

    oracle = _oracle(tmp_path, max_trials=1)
    now = [0.0]
    liveness = distributed.Liveness(oracle, timeout=None, clock=lambda: now[0])
    oracle.create_trial("workerA")
    now[0] = 1e6
    assert liveness.check() == []
    assert oracle.create_trial("workerB").status == "IDLE"


def test_bad_worker_timeouts():
    from cnnzoo import cli
    from tuning import distributed

    for bad in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(ValueError, match="Received: worker_timeout="):
            distributed.check_worker_timeout(bad)
    assert distributed.check_worker_timeout(None) is None
    assert distributed.check_worker_timeout(2) == 2.0
    assert cli.main(["tune", "--worker-timeout", "-3", "--max-trials", "1"]) == 2


def test_a_chiefs_worker_timeout_outlasts_two_heartbeats(monkeypatch, capsys):
    # Shorter, it took trials from live workers: they ran twice.
    import tuning
    from cnnzoo import cli
    from tuning import distributed

    with pytest.raises(ValueError, match=r"at least two heartbeats \(60 s\).*worker_timeout=59"):
        distributed.check_timeout_against_heartbeat(59)
    distributed.check_timeout_against_heartbeat(60)
    distributed.check_timeout_against_heartbeat(None)  # waits forever
    monkeypatch.setenv(distributed.HEARTBEAT_ENV, "1")
    distributed.check_timeout_against_heartbeat(2)

    def search(**kwargs):
        raise AssertionError("the search ran")

    monkeypatch.setattr(tuning.driver, "_search", search)
    monkeypatch.delenv(distributed.HEARTBEAT_ENV)
    assert cli.main(["tune", "--chief", "127.0.0.1:1", "--worker-timeout", "3"]) == 2
    assert "Received: worker_timeout=3.0" in capsys.readouterr().err


def test_a_worker_heartbeat_names_its_trials_and_waits_when_told(monkeypatch):
    import keras_tuner as kt

    from tuning import distributed

    class Chief:
        def __init__(self):
            self.named = []

        def get_trial(self, trial_id):
            self.named.append(trial_id)

        def create_trial(self, tuner_id):
            return kt.engine.trial.Trial(kt.HyperParameters(), trial_id="0", status="IDLE")

    chief = Chief()
    sleeps = []
    monkeypatch.setattr(distributed.time, "sleep", sleeps.append)
    monkeypatch.setenv(distributed.HEARTBEAT_ENV, "0.01")
    with distributed.WorkerSide(chief) as side:
        side.wait_if_idle()  # nothing asked yet: no wait
        assert chief.create_trial("worker1").status == "IDLE"
        assert sleeps == []
        side.wait_if_idle()  # told to wait: waits before asking again
        assert sleeps == [distributed.IDLE_WAIT_S]
        side.trial_ids.append("3")
        deadline = time.monotonic() + 10
        while "3" not in chief.named and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "3" in chief.named
    assert "create_trial" not in vars(chief)  # the worker's own method again
    monkeypatch.setenv(distributed.HEARTBEAT_ENV, "soon")
    with pytest.raises(ValueError, match="CNNZOO_HEARTBEAT_S"):
        distributed.heartbeat_interval()
