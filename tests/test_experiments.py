"""Each experiment runs at a tiny size and writes its report, JSON and plots."""

import json

import pytest

from cnnzoo import cli, experiments


def _check_outputs(result, out, stem, plots):
    names = sorted(p.name for p in out.iterdir())
    want = sorted([f"{stem}.md", f"{stem}.json"] + [f"{stem}_{p}.png" for p in plots])
    assert names == want
    for plot in plots:
        assert (out / f"{stem}_{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / f"{stem}.json").read_text())
    assert data["experiment"] == stem
    assert sorted(str(out / n) for n in want) == sorted(result["files"])
    return data, (out / f"{stem}.md").read_text()


def test_activations(tmp_path):
    result = experiments.run("activations", tmp_path, points=101, log=None)
    data, md = _check_outputs(result, tmp_path, "activations", ["curves"])
    acts = data["activations"]
    assert acts["relu"]["derivative_at_0"] == 0.0
    assert acts["relu"]["max_derivative"] == 1.0
    assert acts["sigmoid"]["max_derivative"] == pytest.approx(0.25, abs=1e-6)
    assert acts["tanh"]["max_derivative"] == pytest.approx(1.0, abs=1e-6)
    assert acts["tanh"]["nonnegative_outputs"] is False
    assert "| relu |" in md and "0.25" in md


@pytest.mark.multibackend  # its gradients come from each backend's autodiff
def test_vanishing_gradients(tmp_path):
    result = experiments.run("vanishing-gradients", tmp_path, depths=(2, 6), steps=3,
                             batch_size=8, activations=("sigmoid", "relu"), log=None)
    data, md = _check_outputs(result, tmp_path, "vanishing_gradients", ["per_layer", "ratio"])
    runs = {(r["depth"], r["activation"]): r for r in data["runs"]}
    assert set(runs) == {(2, "sigmoid"), (2, "relu"), (6, "sigmoid"), (6, "relu")}
    for r in data["runs"]:
        assert len(r["norms_init"]) == r["depth"] and len(r["norms_trained"]) == r["depth"]
    # The sigmoid's derivative is at most 1/4 per layer: over 6 layers its
    # first/last ratio is far below ReLU's.
    assert runs[(6, "sigmoid")]["ratio_init"] < 0.05 * runs[(6, "relu")]["ratio_init"]
    assert "| sigmoid |" in md


def test_vanishing_gradients_names_divergence_and_saturation():
    # A NaN gradient is divergence and a zero one in a sigmoid network is
    # saturation; only a ReLU network "dies" (the report used to say so of any).
    from cnnzoo.experiments import vanishing_gradients as vg

    def run(activation, trained):
        init = [1e-3, 1e-2]
        return {"depth": 2, "activation": activation, "norms_init": init,
                "ratio_init": vg._ratio(init), "norms_trained": trained,
                "ratio_trained": vg._ratio(trained), "state_trained": vg._state(trained),
                "val_accuracy": 0.1}

    runs = [run("sigmoid", [0.0, 0.0]), run("relu", [float("nan"), 1.0]),
            run("tanh", [0.5, 0.25])]
    assert [r["state_trained"] for r in runs] == ["dead", "diverged", "ok"]
    md = vg._markdown(runs, (2,), ("sigmoid", "relu", "tanh"), 5, 8, 8, "glorot_uniform",
                      0.1, 0)
    assert "depth-2 relu network diverged" in md and "n/a (diverged)" in md
    assert "depth-2 sigmoid network saturated" in md and "n/a (dead)" in md
    assert "died" not in md and "inactive" not in md
    md = vg._markdown([run("relu", [0.0, 0.0])], (2,), ("relu",), 5, 8, 8, "he_normal", 0.1, 0)
    assert "depth-2 relu network died" in md


def test_overfitting(tmp_path):
    result = experiments.run("overfitting", tmp_path, rates=(0.0, 0.5), train_samples=40,
                             epochs=2, seeds=1, log=None)
    data, md = _check_outputs(result, tmp_path, "overfitting", ["curves"])
    assert [r["rate"] for r in data["results"]] == [0.0, 0.5]
    for r in data["results"]:
        assert len(r["mean_curves"]["val_accuracy"]) == 2
        assert r["accuracy_gap"] == pytest.approx(
            r["final"]["train_accuracy"] - r["final"]["val_accuracy"])
    assert data["train_samples"] == 40
    # A stratified subset: 4 of each digit (a random draw of 40 misses some).
    assert data["train_class_counts"] == [4] * 10
    assert "| 0.5 |" in md
    # One seed measures no noise between seeds, and the report says so.
    assert "One seed per rate" in md and "Between seeds" not in md


def test_overfitting_with_augmentation_compares_dropout_augmentation_and_both(tmp_path, capsys):
    assert cli.main(["experiment", "overfitting", "--out", str(tmp_path), "--rates", "0,0.5",
                     "--train-samples", "40", "--epochs", "2", "--seeds", "1",
                     "--augment", "default"]) == 0
    capsys.readouterr()
    data = json.loads((tmp_path / "overfitting.json").read_text())
    assert data["augment"] == "default"
    assert [(r["rate"], r["augment"]) for r in data["results"]] == [
        (0.0, "none"), (0.5, "none"), (0.0, "default"), (0.5, "default")]
    # The same seed and subset: augmentation is what changes the training.
    curves = {(r["rate"], r["augment"]): r["mean_curves"]["train_loss"] for r in data["results"]}
    assert curves[(0.0, "default")] != curves[(0.0, "none")]
    md = (tmp_path / "overfitting.md").read_text()
    assert "| 0.5 | default |" in md
    for finding in ("Dropout 0.5 vs dropout 0:", "Dropout 0 + default augmentation vs dropout 0:",
                    "Dropout 0.5 + default augmentation vs dropout 0:"):
        assert finding in md
    with pytest.raises(ValueError, match="Received: augment='randaugment'"):
        experiments.run("overfitting", tmp_path, augment="randaugment")  # digits are grey


def test_ordered_batches_via_the_command(tmp_path, capsys):
    out = tmp_path / "ordered"
    code = cli.main(["experiment", "ordered-batches", "--out", str(out), "--samples", "60",
                     "--image-size", "8", "--epochs", "1", "--seeds", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / "ordered_batches.md") in printed
    result = {"files": [str(p) for p in out.iterdir()]}
    data, md = _check_outputs(result, out, "ordered_batches", ["per_class"])
    assert {(c["order"], c["rate"]) for c in data["conditions"]} == {
        ("sorted", 0.0), ("sorted", 0.5), ("shuffled", 0.0), ("shuffled", 0.5)}
    for c in data["conditions"]:
        assert len(c["per_class_accuracy"]) == 3
        assert sum(c["predicted_share"]) == pytest.approx(1.0)
    assert "circle" in md


def test_bad_options_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="Received: name="):
        experiments.run("overfiting", tmp_path)
    with pytest.raises(ValueError, match="Received: rates="):
        experiments.run("overfitting", tmp_path, rates=(0.0, 1.5))
    with pytest.raises(ValueError, match="Received: depths="):
        experiments.run("vanishing-gradients", tmp_path, depths="5,x")
    assert cli.main(["experiment", "ordered-batches", "--out", str(tmp_path), "--epochs",
                     "0"]) == 2
    for value in (float("inf"), 1e39):  # 1e39 is inf in float32
        with pytest.raises(ValueError, match="Received: x_max="):
            experiments.run("activations", tmp_path, x_max=value)
    with pytest.raises(ValueError, match="finite number. Received: learning_rate=inf"):
        experiments.run("vanishing-gradients", tmp_path, learning_rate=float("inf"))


def test_activations_derivatives_at_4_whatever_the_range(tmp_path):
    # The range [-2, 2] does not reach 4: the report must not show f'(2).
    data = experiments.run("activations", tmp_path, x_max=2.0, points=41, log=None)
    sig = data["activations"]["sigmoid"]
    assert sig["derivative_at_4"] == pytest.approx(0.0176627, rel=1e-4)  # s(4) (1 - s(4))
    assert sig["derivative_at_minus_4"] == pytest.approx(0.0176627, rel=1e-4)
