"""A distributed search on loopback: a chief and workers, Keras Tuner's gRPC oracle."""

import json
import os
import re
import socket
import subprocess
import sys

TRIALS = 6
ARGS = ["--max-trials", str(TRIALS), "--epochs", "1", "--num-samples", "120", "--batch-size", "42",
        "--precision", "float32", "--no-export"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, out):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
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


def test_chief_and_two_workers_on_loopback(tmp_path):
    """Worker 1 packs two trials at a time; worker 2 runs the default (one).

    Worker 2 starts once worker 1 is about to ask for trials, so that worker
    1's first request gets two whatever the machine's load. Worker 2 may
    then find the search over (its start-up takes seconds); it ends at once.
    """
    out = tmp_path / "shared"  # one folder for all: the results folder of several machines
    address = f"127.0.0.1:{_free_port()}"
    procs = {"chief": _start(["--chief", address], out)}
    procs["worker1"] = _start(["--worker", "1", "--chief", address, "--pack", "2"], out)
    logs = {"worker1": ""}
    try:
        for line in procs["worker1"].stdout:  # ends at exit if the line never comes
            logs["worker1"] += line
            if line.startswith("worker1: asking the chief"):
                break
        procs["worker2"] = _start(["--worker", "2", "--chief", address], out)
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
    assert saved["search"]["role"] == "chief"
    assert sorted(t["trial"] for t in saved["trials"]) == list(range(1, TRIALS + 1))
    assert all(t["status"] == "COMPLETED" for t in saved["trials"])
    assert all(0 <= t["val_accuracy"] <= 1 for t in saved["trials"])
    sizes = {t["trial"]: t["pack_size"] for t in saved["trials"]}
    assert all(sizes[n] == 1 for n in two), sizes
    assert any(sizes[n] == 2 for n in one), sizes  # worker 1 packed


def test_a_killed_packed_worker_restarted_with_its_id_finishes_its_trials(tmp_path):
    """SIGKILL a worker mid-pack; the same `--worker 1 --pack 2` gets both trials back.

    The chief keeps each tuner ID's ongoing trial (`worker1`, `worker1_pack1`)
    and hands it only to that ID: without the restart it would wait forever.
    """
    out = tmp_path / "shared"
    address = f"127.0.0.1:{_free_port()}"
    worker = ["--worker", "1", "--chief", address, "--pack", "2"]
    procs = {"chief": _start(["--chief", address], out), "killed": _start(worker, out)}
    logs = {"killed": ""}
    try:
        for line in procs["killed"].stdout:
            logs["killed"] += line
            if logs["killed"].count("worker1 runs trial") == 2:  # the whole pack began
                procs["killed"].kill()
                break
        procs["killed"].wait(timeout=60)
        procs["restarted"] = _start(worker, out)
        for name in ("restarted", "chief"):
            logs[name], _ = procs[name].communicate(timeout=300)
    finally:
        for proc in procs.values():
            proc.kill()
    every = "\n".join(f"== {k}\n{v}" for k, v in logs.items())
    assert procs["killed"].returncode == -9, every
    assert procs["chief"].returncode == 0 and procs["restarted"].returncode == 0, every
    assert "worker1 finished" not in logs["killed"], every
    killed = {int(n) for n in re.findall(r"^worker1 runs trial (\d+)/", logs["killed"], re.MULTILINE)}
    assert len(killed) == 2, every
    restarted = re.findall(r"^worker1 runs trial (\d+)/", logs["restarted"], re.MULTILINE)
    assert {int(n) for n in restarted[:2]} == killed, every  # handed back first
    assert _ran(logs["restarted"], "worker1") == set(range(1, TRIALS + 1)), every
    assert f"Chief: search complete ({TRIALS} trials)." in logs["chief"], every
    saved = json.loads((out / "results.json").read_text())
    assert [t["status"] for t in saved["trials"]] == ["COMPLETED"] * TRIALS


def test_a_worker_without_a_chief_ends_by_itself(tmp_path, monkeypatch):
    import pytest

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
