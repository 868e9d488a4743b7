"""`cnnzoo bench` end to end on a cheap benchmark, and the analytic FLOP count."""

import json

import keras
import pytest

from cnnzoo import _flops, cli
from cnnzoo.bench import common, flops
from tests.helpers import weight_signature


def test_bench_quick_only_serving_writes_valid_json(tmp_path, capsys):
    from cnnzoo import bench

    path = tmp_path / "bench.json"
    markdown = tmp_path / "RESULTS.md"
    # The old table goes; a section after the marker (a GPU run's) stays.
    markdown.write_text(f"# Old table\n| startup | x |\n\n{bench.KEEP_MARKER}\n## On one GPU\n")
    code = cli.main(["bench", "--quick", "--only", "serving", "--json", str(path),
                     "--markdown", str(markdown)])
    assert code == 0
    results = json.loads(path.read_text())
    assert results["quick"] is True
    assert {"cpu", "cores", "backend", "keras", "defaults"} <= set(results["machine"])
    rows = results["rows"]
    assert [r["benchmark"] for r in rows] == ["serving", "serving"]
    for r in rows:
        assert r["status"] == "ok", r["note"]
        assert r["n"] >= 3 and r["q1"] <= r["median"] <= r["q3"] and r["median"] > 0
    assert rows[0]["target"] and isinstance(rows[0]["met"], bool)
    text = markdown.read_text()
    assert "| serving | batch 1: SavedModel serve vs predict_on_batch | speedup |" in text
    assert "Regenerate with `cnnzoo bench --quick --only serving" in text
    assert "Old table" not in text and "| startup |" not in text
    assert text.endswith(f"\n{bench.KEEP_MARKER}\n## On one GPU\n")
    assert "| serving |" in capsys.readouterr().out


def test_startup_first_step_scripts_run():
    # Each is a fresh process: one that fails raises with its stderr.
    import os
    import sys

    from cnnzoo.bench import startup

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    startup._process([sys.executable, "-c", startup._PLAIN_FIRST_STEP.format(path=here)])()
    startup._process([sys.executable, "-c", startup._ZOO_FIRST_STEP])()


def test_bench_rejects_an_unknown_benchmark(capsys):
    assert cli.main(["bench", "--only", "serving", "--only", "flop"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "Did you mean 'flops'?" in err and err.endswith("Received: only='flop'")


def test_plain_simple_cnn_matches_the_zoo_parameter_count():
    # The plain baseline must be the same architecture as the zoo model.
    plain = common.plain_simple_cnn((28, 28, 1), 10)
    zoo = common.zoo_model("simple_cnn", (28, 28, 1), 10)
    assert plain.count_params() == zoo.count_params() == 421_642


@pytest.mark.parametrize("name", sorted(common.APPLICATIONS))
def test_zoo_builds_the_plain_build_architecture(name):
    # The float32 throughput ratio compares builds, not architectures: the
    # cnnzoo contender has keras.applications' kernels, strides and FLOPs.
    shape = (32, 32, 3)
    plain = common.plain_model(name, shape, 10)
    zoo = common.zoo_model(name, shape, 10)
    assert weight_signature(zoo) == weight_signature(plain)
    assert _flops.forward_flops(zoo) == _flops.forward_flops(plain)
    dropouts = [[layer for layer in m.layers if "Dropout" in type(layer).__name__]
                for m in (zoo, plain)]
    assert dropouts == [[], []]


def test_throughput_run_rows():
    from cnnzoo.bench import throughput

    rows = throughput.run(models=["simple_cnn"], repeats=2, table={"simple_cnn": (16, 1, 4, 1)})
    assert [r["name"] for r in rows] == ["simple_cnn: cnnzoo float32 vs plain Keras",
                                         "simple_cnn: cnnzoo default vs plain Keras"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["target"] == ">= 0.98" and isinstance(rows[0]["met"], bool)
    assert rows[0]["n"] == 2 and rows[0]["median"] > 0
    assert "16x16x1, batch 4; per image: plain" in rows[0]["context"]
    assert rows[0]["note"] == ""  # the same architecture, the same parameters


def test_conv_stack_keeps_the_convolutions_and_drops_the_head():
    whole = common.zoo_model("vgg11", (32, 32, 3), 10)
    stack = flops.conv_stack("vgg11", (32, 32, 3), 10)
    convs = [layer for layer in whole.layers if isinstance(layer, keras.layers.Conv2D)]
    stack_convs = [layer for layer in stack.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel.shape for c in convs] == [c.kernel.shape for c in stack_convs]
    # VGG11's fully connected head at 32x32: 512 -> 4096 -> 4096 -> 10.
    head = (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    assert whole.count_params() - stack.count_params() == head - (512 * 10 + 10)


def test_flops_run_reports_the_target_and_the_small_batch_breakdown():
    rows = flops.run(repeats=2, config=("vgg11", 32, 2, 1), matmul_n=64, small_batch=2)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert rows[0]["target"] == ">= 0.80" and isinstance(rows[0]["met"], bool)
    assert "batch 2" in rows[0]["context"] and "bfloat16" in rows[1]["name"]
    assert rows[2]["name"] == "vgg11 training step at batch 2 / float32 matmul ceiling"
    assert "18,923,530 of them in the fully connected head" in rows[2]["note"]
    assert rows[3]["name"].startswith("vgg11 convolutional stack at batch 2")
    for r in rows:
        assert r["n"] == 2 and 0 < r["q1"] <= r["median"] <= r["q3"]


def test_search_best_objective_is_reached_unless_worse_beyond_two_binomial_se():
    from cnnzoo.bench import search

    se = (0.9 * 0.1 / 400) ** 0.5  # 0.015
    assert search.best_reached(0.9, 0.9, 400)[0]
    assert search.best_reached(0.9 - 1.9 * se, 0.9, 400)[0]
    reached, note = search.best_reached(0.9 - 2.1 * se, 0.9, 400)
    assert not reached and "difference -0.0315" in note and "SE = 0.0150" in note
    reached, note = search.best_reached(0.99, 0.9, 400)  # better: not a miss
    assert reached and note.endswith("better beyond noise)")



@pytest.mark.parametrize("kind, threads", [("zoo", 1), ("plain", 0)])
def test_search_contender_in_a_fresh_process(tmp_path, kind, threads):
    """What `search.run` runs per contender on TensorFlow: cnnzoo sets 1 thread, plain none."""
    import os
    import subprocess
    import sys

    spec = {"kind": kind, "data": "digits", "max_trials": 1, "epochs": 1, "seed": 0,
            "out": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "cnnzoo.bench.search", json.dumps(spec)],
                            capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["seconds"] > 0 and 0 <= found["best"] <= 1
    assert found["threads"] == threads


def test_fresh_searches_give_every_search_its_own_folder_and_clock(monkeypatch, tmp_path):
    import subprocess

    from cnnzoo.bench import search

    specs = []

    def fake_run(argv, **kwargs):
        spec = json.loads(argv[-1])
        specs.append(spec)
        if spec["seed"] == 9:
            return subprocess.CompletedProcess(argv, 1, "", (
                "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n"
                "Traceback (most recent call last):\nValueError: bad folder\n"))
        found = {"seconds": 1.5 + len(specs), "best": 0.5, "threads": 1}
        return subprocess.CompletedProcess(argv, 0, json.dumps(found) + "\n", "")

    monkeypatch.setattr(search.subprocess, "run", fake_run)
    runs = search._FreshSearches("digits", 3, 1, str(tmp_path))
    for name in ["plain Keras Tuner", "cnnzoo default", "cnnzoo default"]:
        before = runs.clock()
        runs.run(name)
        assert runs.clock() - before == 1.5 + len(specs)  # the child's own time
    outs = [s["out"] for s in specs]
    assert len(set(outs)) == len(outs)  # a used folder would make the next search resume
    assert [s["kind"] for s in specs] == ["plain", "zoo", "zoo"]
    assert runs.best["cnnzoo default"] == [0.5, 0.5]
    runs.seed = 9
    with pytest.raises(RuntimeError, match=r"cnnzoo default search failed.*ValueError: bad "
                                           r"folder$") as error:
        runs.run("cnnzoo default")
    assert "oneDNN" not in str(error.value)


def test_bench_search_case_is_checked_before_anything_runs(capsys):
    # A case of the search benchmark: refused unknown, or beside other benchmarks.
    assert cli.main(["bench", "--only", "search", "--search-case", "resnet50"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "Did you mean 'resnet18'? Received: search_case='resnet50'")
    assert cli.main(["bench", "--only", "search", "--only", "serving",
                     "--search-case", "resnet18"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.endswith("Received: only=['search', 'serving']")
    from cnnzoo.bench import search
    from cnnzoo.commands import bench as command

    assert command.SEARCH_CASES == tuple(search.CASES)  # the command line's copy
    with pytest.raises(ValueError, match=r"Received: search_case='resnet'$"):
        search.run(case="resnet")
    with pytest.raises(ValueError, match=r"fresh processes. Received: fresh=False$"):
        search.run(case="resnet18", fresh=False)


def test_fresh_searches_of_a_case_pass_the_model_and_collect_the_breakdowns(
        monkeypatch, tmp_path):
    import subprocess

    from cnnzoo.bench import search

    def fake_run(argv, **kwargs):
        spec = json.loads(argv[-1])
        assert (spec["model"], spec["breakdown"]) == ("resnet18", True)
        found = {"seconds": 4.0, "best": 0.5, "threads": 0,
                 "parts": {"training steps": 3.0, "building models": 1.0},
                 "calls": {"training steps": 12, "building models": 4}}
        return subprocess.CompletedProcess(argv, 0, json.dumps(found) + "\n", "")

    monkeypatch.setattr(search.subprocess, "run", fake_run)
    runs = search._FreshSearches("shapes", 4, 3, str(tmp_path), "resnet18", breakdown=True)
    runs.run("plain Keras Tuner")
    runs.run("plain Keras Tuner")
    note = search._parts_note("plain Keras Tuner", runs.parts["plain Keras Tuner"])
    assert note == ("; where plain Keras Tuner's search time went (median of 2 searches, "
                    "4.0 s): training steps 3.0 s (75%, 12 calls), building models 1.0 s "
                    "(25%, 4 calls)")


def test_plain_zoo_build_searches_the_family_ranges_with_keras_defaults():
    import keras_tuner as kt

    import cnnzoo
    from cnnzoo.bench import search

    hp = kt.HyperParameters()
    model = search.plain_zoo_build("lenet5", (32, 32, 1), 3)(hp)
    low, high, step = cnnzoo.model_info("lenet5")["search_space"]["dropout_rate"]
    rate = hp.get_config()["space"][0]["config"]
    assert (rate["name"], rate["min_value"], rate["max_value"], rate["step"]) == (
        "dropout_rate", low, high, step)
    assert [p.name for p in hp.space] == ["dropout_rate", "block_dropout_rate", "dropout_type"]
    assert model.dtype_policy.name == "float32"
    assert type(model.optimizer).__name__ == "Adam" and model.optimizer.learning_rate == 0.001
    assert model.output_shape == (None, 3)
