"""cnnzoo.recipe: optimizers, schedules, warm-up, label smoothing, clipping, end to end."""

import csv
import json
import math
import os

import keras
import numpy as np
import pytest

from cnnzoo import cli, recipe
from cnnzoo import train as T
from cnnzoo.recipe import optim
from tests.helpers import Cut, cut_after_first_epoch

# Small and fast: 200 digits, float32 so results do not depend on bf16 hardware.
KW = dict(data="digits", num_samples=200, batch_size=64, precision="float32", verbose=0)
RECIPE_KEYS = [f.name for f in recipe.fields()]


def _history(run_dir):
    with open(os.path.join(run_dir, T.HISTORY_FILE)) as f:
        return list(csv.DictReader(f))


# -- the pieces, against Keras and against hand-computed values -----------------------


def test_label_smoothing_equals_keras_categorical_crossentropy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=16)
    probs = keras.ops.softmax(keras.ops.convert_to_tensor(rng.normal(size=(16, 5)), "float32"))
    for s in (0.0, 0.1, 0.3):
        ours = optim.LabelSmoothingCrossentropy(s)(labels, probs)
        theirs = keras.losses.CategoricalCrossentropy(label_smoothing=s)(
            keras.ops.one_hot(labels, 5), probs)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ours),
                                   keras.ops.convert_to_numpy(theirs), rtol=1e-6)
    # Integer labels of shape (batch, 1), as Keras's sparse loss takes them too.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(optim.LabelSmoothingCrossentropy(0.1)(labels[:, None], probs)),
        keras.ops.convert_to_numpy(optim.LabelSmoothingCrossentropy(0.1)(labels, probs)))
    # No smoothing is Keras's own sparse loss; the loss round-trips its config.
    assert optim.build_loss(0.0) == "sparse_categorical_crossentropy"
    again = optim.LabelSmoothingCrossentropy.from_config(
        optim.LabelSmoothingCrossentropy(0.2).get_config())
    assert again.label_smoothing == 0.2


def test_warmup_against_hand_computed_rates():
    def rates(schedule, steps):
        return [float(keras.ops.convert_to_numpy(schedule(s))) for s in steps]

    # Linear to 0.1 over 4 steps (the first step already moves), then constant.
    np.testing.assert_allclose(rates(optim.Warmup(0.1, 4), range(7)),
                               [0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1], rtol=1e-6)
    # Then a cosine over 4 steps, counted from the warm-up's end.
    after = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=4, alpha=0.0)
    expected = [0.025, 0.05, 0.075, 0.1] + [0.05 * (1 + math.cos(math.pi * k / 4))
                                            for k in range(5)] + [0.0]
    warm = optim.Warmup(0.1, 4, after)
    np.testing.assert_allclose(rates(warm, range(10)), expected, rtol=1e-5, atol=1e-7)
    # Its config round-trips through Keras's schedule serialization.
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(warm))
    np.testing.assert_allclose(rates(again, range(10)), expected, rtol=1e-5, atol=1e-7)


def test_schedules_span_the_steps_after_warmup():
    lr = 0.2

    def at(schedule, step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    constant = recipe.Recipe()
    assert optim.build_schedule(constant, lr, steps_per_epoch=10, epochs=4) == lr
    cosine = optim.build_schedule(recipe.Recipe(schedule="cosine", warmup_epochs=1), lr,
                                  steps_per_epoch=10, epochs=5)
    assert at(cosine, 9) == pytest.approx(lr) and at(cosine, 30) == pytest.approx(lr / 2)
    assert at(cosine, 50) == pytest.approx(0.0, abs=1e-9)
    step = optim.build_schedule(recipe.Recipe(schedule="step"), lr, steps_per_epoch=10,
                                epochs=4)
    # x0.1 at 1/2 and 3/4 of the 40 steps.
    assert [at(step, s) for s in (0, 19, 21, 29, 31, 39)] == pytest.approx(
        [lr, lr, lr * 0.1, lr * 0.1, lr * 0.01, lr * 0.01])


def test_optimizers_are_keras_own_with_the_recipe_settings():
    def build(**kwargs):
        return optim.build_optimizer(recipe.Recipe(**kwargs), steps_per_epoch=2, epochs=2)

    adam = build()
    assert type(adam) is keras.optimizers.Adam and adam.weight_decay is None
    assert adam.clipnorm is None and float(adam.learning_rate) == pytest.approx(1e-3)
    sgd = build(optimizer="sgd", clipnorm=1.0, weight_decay=1e-4)
    assert type(sgd) is keras.optimizers.SGD and sgd.nesterov and sgd.momentum == 0.9
    assert sgd.clipnorm == 1.0 and sgd.weight_decay == 1e-4
    assert float(sgd.learning_rate) == pytest.approx(0.01)  # Keras's SGD default
    adamw = build(optimizer="adamw")
    # AdamW without weight decay is Adam: Keras's own default decay (0.004) is not used.
    assert type(adamw) is keras.optimizers.AdamW and adamw.weight_decay == 0.0


# -- end to end ---------------------------------------------------------------------


@pytest.mark.parametrize("settings", [
    dict(optimizer="sgd", schedule="cosine", warmup_epochs=1, clipnorm=1.0),
    dict(optimizer="adamw", weight_decay=0.05, schedule="step", label_smoothing=0.1),
], ids=["sgd-cosine-warmup-clipnorm", "adamw-step-smoothing"])
def test_recipe_end_to_end(tmp_path, settings):
    out = tmp_path / "run"
    result = T.train("simple_cnn", out=out, epochs=3, **KW, **settings)
    record = json.loads((out / T.RUN_FILE).read_text())
    expected = {**recipe.defaults(), **settings}
    expected["learning_rate"] = recipe.DEFAULT_LEARNING_RATES[settings["optimizer"]]
    assert {k: record["config"][k] for k in RECIPE_KEYS} == expected
    assert result.config == record["config"]
    optimizer = result.model.optimizer
    assert type(optimizer).__name__.lower() == settings["optimizer"]
    assert optimizer.clipnorm == settings.get("clipnorm")
    assert (optimizer.weight_decay or 0.0) == settings.get("weight_decay", 0.0)
    smoothing = settings.get("label_smoothing", 0.0)
    assert getattr(result.model.loss, "label_smoothing", 0.0) == smoothing
    assert all(math.isfinite(x) for x in result.history["loss"])
    # history.csv: the rate after each epoch, as the schedule gives it.
    lr = expected["learning_rate"]
    got = [float(row["learning_rate"]) for row in _history(out)]
    if settings["schedule"] == "cosine":  # one warm-up epoch, then a cosine over two
        want = [lr, lr / 2, 0.0]
    else:  # x0.1 at step 3*steps/2 (during epoch 2), x0.01 at 3*3*steps/4 (epoch 3)
        want = [lr, lr * 0.1, lr * 0.01]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    assert result.history["learning_rate"] == got
    # The model card of an export holds the recipe (from run.json's config).
    assert cli.main(["export", str(out), "--out", str(tmp_path / "export"),
                     "--format", "keras"]) == 0
    with open(tmp_path / "export" / "model_card.json") as f:
        card = json.load(f)
    assert {k: card["model"]["config"][k] for k in RECIPE_KEYS} == expected


def test_a_schedule_resumes_where_it_stopped(tmp_path, monkeypatch):
    settings = dict(optimizer="sgd", schedule="cosine", warmup_epochs=1, epochs=3, **KW)
    with monkeypatch.context() as patch:
        cut_after_first_epoch(patch)
        with pytest.raises(Cut):
            T.train("simple_cnn", out=tmp_path / "cut", **settings)
    assert json.loads((tmp_path / "cut" / T.RUN_FILE).read_text())["status"] == "running"
    resumed = T.train("simple_cnn", out=tmp_path / "cut", **settings)
    assert resumed.resumed_from == 1
    whole = T.train("simple_cnn", out=tmp_path / "whole", **settings)
    # The optimizer's step (and so the schedule) came back with the checkpoint:
    # every rate, loss and metric equals the uninterrupted run's.
    assert _history(tmp_path / "cut") == _history(tmp_path / "whole")
    assert len({row["learning_rate"] for row in _history(tmp_path / "whole")}) == 3
    assert resumed.test_metrics == whole.test_metrics


def test_a_run_recorded_before_the_recipe_resumes_with_its_defaults(tmp_path, monkeypatch):
    out = tmp_path / "old"
    with monkeypatch.context() as patch:
        cut_after_first_epoch(patch)
        with pytest.raises(Cut):
            T.train("simple_cnn", out=out, epochs=2, **KW)
    # What a run.json of before the recipe holds: its optimizer and learning rate only.
    record = json.loads((out / T.RUN_FILE).read_text())
    for key in RECIPE_KEYS:
        if key not in ("optimizer", "learning_rate"):
            del record["config"][key]
    (out / T.RUN_FILE).write_text(json.dumps(record))
    result = T.train("simple_cnn", out=out, epochs=2, **KW)
    assert result.resumed_from == 1 and result.epochs_run == 2
    assert {k: result.config[k] for k in RECIPE_KEYS} == {**recipe.defaults(),
                                                          "learning_rate": 1e-3}
    # Another recipe in the same folder is refused, naming the difference.
    with pytest.raises(ValueError, match=r"\(schedule: 'constant' -> 'cosine'\)"):
        T.train("simple_cnn", out=out, epochs=2, schedule="cosine", **KW)


# -- bad values and the command line ----------------------------------------------------


@pytest.mark.parametrize("kwargs, received", [
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
    ({"schedule": "linear"}, "schedule='linear'"),
    ({"augment": "heavy"}, "augment='heavy'"),
    ({"flip": "diagonal"}, "flip='diagonal'"),
    ({"learning_rate": 0.0}, "learning_rate=0.0"),
    ({"learning_rate": "fast"}, "learning_rate='fast'"),
    ({"weight_decay": -0.1}, "weight_decay=-0.1"),
    ({"warmup_epochs": -1}, "warmup_epochs=-1"),
    ({"warmup_epochs": 1.5}, "warmup_epochs=1.5"),
    ({"warmup_epochs": 2, "epochs": 2}, "warmup_epochs=2"),
    ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
    ({"clipnorm": 0.0}, "clipnorm=0.0"),
    ({"augment": "randaugment"}, "augment='randaugment'"),  # digits are grey
])
def test_bad_recipe_values(tmp_path, kwargs, received):
    out = tmp_path / "run"
    with pytest.raises(ValueError) as caught:
        T.train("simple_cnn", out=out, **{"epochs": 3, **KW, **kwargs})
    message = str(caught.value)
    assert message.endswith(f"Received: {received}") and "\n" not in message, message
    assert not out.exists()


def _train_args(argv):
    from cnnzoo import commands

    args = cli._parser("train").parse_args(["train", "--out", "x", *argv])
    commands.convert_types(args)
    return recipe.from_arguments(args)


def test_cli_options(capsys):
    got = _train_args(["--optimizer", "sgd", "--learning-rate", "0.05", "--weight-decay",
                       "1e-4", "--schedule", "cosine", "--warmup-epochs", "2",
                       "--label-smoothing", "0.1", "--clipnorm", "1", "--augment", "light",
                       "--flip", "none"])
    assert got == recipe.Recipe(optimizer="sgd", learning_rate=0.05, weight_decay=1e-4,
                                schedule="cosine", warmup_epochs=2, label_smoothing=0.1,
                                clipnorm=1.0, augment="light", flip="none")
    assert _train_args([]) == recipe.Recipe()  # the defaults are training as it was
    for argv, name in [(["--optimizer", "rmsprop"], "optimizer"),
                       (["--warmup-epochs", "two"], "warmup"),
                       (["--label-smoothing", "1"], "label_smoothing=1.0")]:
        code = cli.main(["train", "--out", "x", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and name in err and len(err.splitlines()) == 1, err
    assert not os.path.exists("x")
