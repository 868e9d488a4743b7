"""A distributed search on loopback: one chief, two workers, Keras Tuner's gRPC oracle."""

import json
import os
import re
import socket
import subprocess
import sys

ARGS = ["--max-trials", "3", "--epochs", "1", "--num-samples", "120", "--batch-size", "42",
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
    return {int(n) for n in re.findall(rf"^{worker} runs trial (\d+)/3", log, re.M)}


def test_chief_and_two_workers_on_loopback(tmp_path):
    out = tmp_path / "shared"  # one folder for all: the results folder of several machines
    address = f"127.0.0.1:{_free_port()}"
    procs = {"chief": _start(["--chief", address], out)}
    procs["worker1"] = _start(["--worker", "1", "--chief", address], out)
    procs["worker2"] = _start(["--worker", "2", "--chief", address], out)
    logs = {}
    try:
        for name, proc in procs.items():
            logs[name], _ = proc.communicate(timeout=300)
    finally:
        for proc in procs.values():
            proc.kill()
    every = "\n".join(f"== {k}\n{v}" for k, v in logs.items())
    assert all(p.returncode == 0 for p in procs.values()), every
    assert f"Chief listening on {address}" in logs["chief"], every
    assert "Chief: search complete (3 trials)." in logs["chief"], every

    one, two = _ran(logs["worker1"], "worker1"), _ran(logs["worker2"], "worker2")
    assert one.isdisjoint(two), every
    assert one | two == {1, 2, 3}, every
    for name in ("worker1", "worker2"):
        assert f"{name}: search over" in logs[name], every

    saved = json.loads((out / "results.json").read_text())
    assert saved["search"]["role"] == "chief"
    assert sorted(t["trial"] for t in saved["trials"]) == [1, 2, 3]
    assert all(t["status"] == "COMPLETED" for t in saved["trials"])


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
