"""One compiled model reused across trials: each trial ends exactly as on its own fresh model."""

import json
import os
from typing import ClassVar

import keras
import keras_tuner as kt
import numpy as np
import pytest

import cnnzoo.data
from cnnzoo import input_pipeline
from tuning import reuse, tuners
from tuning.hypermodel import ZooHyperModel

EPOCHS = 2
# A reused model and a fresh one run the same float32 kernels on the same
# batches; the tolerance only allows for floating-point reassociation (they
# agree bit for bit on this CPU).
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def digits():
    return cnnzoo.data.load_dataset("digits", num_samples=300, seed=0)


def _hypermodel(ds, **kwargs):
    return ZooHyperModel("simple_cnn", input_shape=ds.input_shape, num_classes=ds.num_classes,
                         **kwargs)


def _search(ds, folder, hypermodel, max_trials=4, epochs=EPOCHS, reuse_models=True,
            kind="random", **fit):
    tuner = tuners.make_tuner(kind, hypermodel, directory=folder, max_trials=max_trials,
                              epochs=epochs, seed=0, quiet=True)
    tuner.reuse = reuse_models
    tuner.search(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val),
                 epochs=epochs, batch_size=32, verbose=0, **fit)
    return tuner


def _assert_ends_as_alone(tuner, trial, ds, hypermodel):
    """The tuner's record of `trial` is that of its fresh model trained alone, by hand."""
    keras.utils.set_random_seed(tuner.trial_seed(trial))
    model = hypermodel.build(trial.hyperparameters.copy())
    train = input_pipeline.train_data(ds.x_train, ds.y_train, batch_size=32, seed=tuner.seed)
    val = input_pipeline.eval_data(ds.x_val, ds.y_val)["x"]
    history = model.fit(**train, validation_data=val, epochs=EPOCHS, verbose=0).history
    best = int(np.argmax(history["val_accuracy"]))  # the metrics the tuner reports
    for name in ("val_accuracy", "val_loss", "accuracy", "loss"):
        np.testing.assert_allclose(trial.metrics.get_last_value(name), history[name][best],
                                   rtol=RTOL, atol=ATOL, err_msg=name)
    if best == EPOCHS - 1:
        # The checkpoint holds the best epoch's weights: compare when it is the last.
        restored = tuner.load_model(trial)
        for a, b in zip(restored.get_weights(), model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    keras.backend.clear_session()


@pytest.mark.multibackend
def test_steps_per_execution_divides_the_epoch_and_is_one_on_torch():
    # A divisor: an epoch of an endless dataset is then exactly its steps.
    # Keras's torch backend refuses more than one step per call (every trial
    # failed with "`steps_per_execution` must be 1 with the PyTorch backend").
    on_torch = keras.backend.backend() == "torch"
    for steps, want in ((14, 14), (17, 1), (48, 16), (None, 1), (0, 1)):
        assert reuse.steps_per_execution(steps) == (1 if on_torch else want)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse", steps_per_execution=reuse.steps_per_execution(14))
    model.fit(np.ones((28, 3), "float32"), np.zeros((28, 2), "float32"), batch_size=2,
              epochs=1, verbose=0)


@pytest.mark.slow
@pytest.mark.multibackend
def test_later_trials_reuse_the_compiled_model_and_end_as_fresh_ones_do(digits, tmp_path):
    # Four trials differing in their dropout and learning rates (all held in
    # variables): one compiled model trains them all, reset before each from
    # a freshly built one, and every trial ends with the weights and metrics
    # of its own fresh model trained alone.
    hypermodel = _hypermodel(digits, learning_rate=[1e-3, 3e-3], dropout_type="standard")
    tuner = _search(digits, tmp_path / "reused", hypermodel)
    assert tuner.models_built == 1
    trials = [tuner.oracle.trials[t] for t in sorted(tuner.oracle.trials)]
    assert [t.status for t in trials] == ["COMPLETED"] * 4
    assert len({json.dumps(t.hyperparameters.values, sort_keys=True) for t in trials}) == 4
    assert len({t.hyperparameters.values["learning_rate"] for t in trials}) == 2
    for trial in trials[1:]:  # the trials trained by the reused model
        _assert_ends_as_alone(tuner, trial, digits, hypermodel)
    # Without reuse, a model built and traced per trial, and the same results
    # (the first two trials: the second is one the reused model trained).
    fresh = _search(digits, tmp_path / "fresh", hypermodel, max_trials=2, reuse_models=False)
    assert fresh.models_built == 2
    assert len(fresh.oracle.trials) == 2
    for trial_id, trial in fresh.oracle.trials.items():
        reused = tuner.oracle.trials[trial_id]
        assert trial.hyperparameters.values == reused.hyperparameters.values
        assert trial.status == "COMPLETED"
        for name in ("val_accuracy", "val_loss", "accuracy", "loss"):
            np.testing.assert_allclose(trial.metrics.get_last_value(name),
                                       reused.metrics.get_last_value(name),
                                       rtol=RTOL, atol=ATOL, err_msg=name)


def test_trials_of_a_recipe_on_a_reused_model_end_as_fresh_ones_do(digits, tmp_path):
    # SGD's momentum slots and step, a schedule that restarts with each trial, and
    # the augmentation's seed states: all reset from the trial's fresh model.
    from cnnzoo.recipe import Recipe

    recipe = Recipe(optimizer="sgd", schedule="cosine", warmup_epochs=1, augment="light",
                    flip="none", weight_decay=1e-4, label_smoothing=0.1)
    steps = -(-len(digits.x_train) // 32)
    hypermodel = _hypermodel(digits, recipe=recipe, steps_per_epoch=steps, epochs=EPOCHS,
                             dropout_type="standard")
    tuner = _search(digits, tmp_path, hypermodel, max_trials=3)
    assert tuner.models_built == 1
    trials = [tuner.oracle.trials[t] for t in sorted(tuner.oracle.trials)]
    for trial in trials[1:]:
        _assert_ends_as_alone(tuner, trial, digits, hypermodel)


def test_a_search_traces_its_training_step_once(digits, tmp_path, monkeypatch):
    # One compiled model for the whole search, whose optimizer, loss and
    # metrics are built before its first step: TensorFlow traces that step
    # once (twice when Keras creates them inside the first trace).
    import tensorflow as tf

    traces, tf_seeds = [], []
    step = keras.Model.train_step

    def counted(self, *args):
        traces.append(self.name)
        return step(self, *args)

    monkeypatch.setattr(keras.Model, "train_step", counted)
    # Nor is it instantiated again for each trial: setting TensorFlow's seed
    # would clear its compiled functions (`runtime.seed_trial`).
    monkeypatch.setattr(tf.random, "set_seed", tf_seeds.append)
    tuner = _search(digits, tmp_path, _hypermodel(digits), epochs=1)
    assert tuner.models_built == 1
    assert len(traces) == 1, traces
    assert tf_seeds == []


def test_other_settings_get_their_own_model_and_its_memory_is_freed(digits, tmp_path):
    # A searched activation changes the graph: trials with another one cannot
    # share a model. Each model gets one memory window, closed (session
    # cleared) when the next model replaces it.
    events = []

    class Memory:
        def begin(self):
            events.append("begin")

        def end(self):
            events.append("end")
            keras.backend.clear_session()

    hypermodel = _hypermodel(digits, activation=["relu", "gelu"], dropout_rate=[0.0, 0.5],
                             block_dropout_rate=0.0, dropout_type="standard")
    tuner = tuners.make_tuner("random", hypermodel, directory=tmp_path, max_trials=4, seed=0,
                              quiet=True)
    tuner.model_memory = Memory()
    tuner.search(digits.x_train[:64], digits.y_train[:64],
                 validation_data=(digits.x_val, digits.y_val), epochs=1, batch_size=32,
                 verbose=0)
    kinds = [t.hyperparameters.values["activation"]
             for _, t in sorted(tuner.oracle.trials.items())]
    assert len(kinds) == 4 and len(set(kinds)) == 2
    changes = 1 + sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert tuner.models_built == changes
    assert events == ["begin", "end"] * changes


def test_the_reuse_key_is_every_value_not_held_in_variables():
    held = frozenset({"dropout_rate", "learning_rate"})
    a = {"dropout_rate": 0.1, "learning_rate": 1e-3, "activation": "relu"}
    b = {"dropout_rate": 0.5, "learning_rate": 1e-2, "activation": "relu"}
    c = {"dropout_rate": 0.1, "learning_rate": 1e-3, "activation": "gelu"}
    # Hyperband's bookkeeping changes how a trial trains, not its model.
    d = dict(a, **{"tuner/epochs": 3, "tuner/trial_id": "0001", "tuner/bracket": 1})
    keys = [reuse.reuse_key(values, held) for values in (a, b, c, d)]
    assert keys[0] == keys[1] == keys[3] != keys[2]
    # Declared, not found by name: "dropout" in a name decides nothing.
    assert reuse.reuse_key(a, frozenset()) != reuse.reuse_key(b, frozenset())


def test_a_zoo_hypermodel_declares_what_it_holds_in_variables(digits):
    assert _hypermodel(digits).variable_hyperparameters == {
        "dropout_rate", "block_dropout_rate", "dropout_type", "learning_rate"}
    per_stage = _hypermodel(digits, per_stage=True).variable_hyperparameters
    assert {"block_dropout_rate_1", "block_dropout_rate_2"} <= per_stage
    assert "block_dropout_rate" not in per_stage
    # Plain dropout layers bake their rates into the graph.
    assert _hypermodel(digits, tunable_dropout=False).variable_hyperparameters == \
        {"learning_rate"}


def test_the_best_epoch_is_checkpointed_once_training_ends(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = str(tmp_path / "best.weights.h5")
    callback = reuse.BestEpochCheckpoint(kt.Objective("val_accuracy", "max"), path)
    callback.set_model(model)
    snapshots = []
    for epoch, accuracy in enumerate((0.5, 0.9, 0.7)):  # best at epoch 2 of 3
        model.set_weights([w + 1.0 for w in model.get_weights()])
        snapshots.append([w.copy() for w in model.get_weights()])
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy})
    assert not os.path.exists(path)  # nothing written per epoch
    callback.on_train_end()
    restored = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    restored.load_weights(path)
    for a, b in zip(restored.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.get_weights(), snapshots[1]):  # the model holds them too
        np.testing.assert_array_equal(a, b)


def test_a_best_last_epoch_is_written_as_it_ends_without_a_copy(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = str(tmp_path / "best.weights.h5")
    callback = reuse.BestEpochCheckpoint(kt.Objective("val_accuracy", "max"), path)
    callback.set_model(model)
    callback.set_params({"epochs": 3})
    copies = []
    get_weights = model.get_weights
    monkeypatch.setattr(model, "get_weights", lambda: copies.append(1) or get_weights())
    for epoch, accuracy in enumerate((0.5, 0.9, 0.95)):  # best at the last epoch
        model.set_weights([w + 1.0 for w in get_weights()])
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy})
    last = [w.copy() for w in get_weights()]
    assert len(copies) == 2 and os.path.exists(path)  # epochs 1 and 2 copied; 3 written
    callback.on_train_end()
    restored = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    restored.load_weights(path)
    for a, b, c in zip(restored.get_weights(), get_weights(), last):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)


class _OwnFit(ZooHyperModel):
    def fit(self, hp, model, *args, **kwargs):
        return super().fit(hp, model, *args, **kwargs)


class _OwnBuild(ZooHyperModel):
    def build_model(self, **values):
        return super().build_model(**values)


class _OwnBuildDeclared(_OwnBuild):
    variable_hyperparameters = frozenset({"dropout_rate"})


def test_which_hypermodels_reuse_models(digits, tmp_path):
    kwargs = {"input_shape": digits.input_shape, "num_classes": digits.num_classes}
    assert reuse.refusal(ZooHyperModel("simple_cnn", **kwargs)) is None
    assert reuse.refusal(_OwnBuildDeclared("simple_cnn", **kwargs)) is None
    assert "build_model() is not the one its variable_hyperparameters describe" in \
        reuse.refusal(_OwnBuild("simple_cnn", **kwargs))
    assert "fit() of its own" in reuse.refusal(_OwnFit("simple_cnn", **kwargs))
    assert "declares no variable_hyperparameters" in reuse.refusal(kt.HyperModel())
    # Refused: every trial trains through Keras Tuner's own run_trial, fresh.
    tuner = _search(digits, tmp_path, _OwnBuild("simple_cnn", **kwargs), max_trials=2,
                    epochs=1)
    assert tuner.models_built == 0
    assert [t.status for t in tuner.oracle.trials.values()] == ["COMPLETED"] * 2


def test_a_build_that_compiles_otherwise_gets_a_model_of_its_own(digits, tmp_path):
    # The declaration says `x` is held in variables, but the build derives an
    # optimizer setting from it: the compile settings tell, and the trial
    # trains on a model of its own, ending as a fresh one.
    class Declared(kt.HyperModel):
        variable_hyperparameters = frozenset({"x"})

        def build(self, hp):
            x = hp.Choice("x", [0, 1])
            model = keras.Sequential([keras.Input(digits.input_shape), keras.layers.Flatten(),
                                      keras.layers.Dense(digits.num_classes,
                                                         activation="softmax")])
            model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.9 - 0.1 * x),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model

    tuner = _search(digits, tmp_path, Declared(), max_trials=2, epochs=1)
    trials = list(tuner.oracle.trials.values())
    assert {t.hyperparameters.values["x"] for t in trials} == {0, 1}
    assert [t.status for t in trials] == ["COMPLETED"] * 2
    assert tuner.models_built == 2


class _Recorder(keras.callbacks.Callback):
    """Notes which instance trained which model (Keras Tuner gives each trial a copy)."""

    seen: ClassVar[list] = []

    def on_train_begin(self, logs=None):
        _Recorder.seen.append((id(self), id(self.model)))


def test_search_callbacks_reach_each_trial_on_the_reused_model(digits, tmp_path):
    # As Keras Tuner's run_trial: a deep copy of each callback per trial.
    _Recorder.seen = []
    original = _Recorder()
    tuner = tuners.make_tuner("random", _hypermodel(digits), directory=tmp_path,
                              max_trials=2, seed=0, quiet=True)
    tuner.search(digits.x_train[:64], digits.y_train[:64], epochs=1, batch_size=32,
                 verbose=0, validation_data=(digits.x_val, digits.y_val),
                 callbacks=[original])
    assert tuner.models_built == 1
    callbacks, models = zip(*_Recorder.seen)
    assert len(set(callbacks)) == 2 and id(original) not in callbacks
    assert len(set(models)) == 1  # one compiled model, both trials


@pytest.mark.parametrize("kwargs", [
    {"validation_split": 0.2},
    {"sample_weight": np.ones(64)},
], ids=["validation_split", "sample_weight"])
def test_fit_arguments_a_reused_model_would_drop_train_fresh(digits, tmp_path, kwargs):
    tuner = tuners.make_tuner("random", _hypermodel(digits), directory=tmp_path,
                              max_trials=2, seed=0, quiet=True)
    if "validation_split" not in kwargs:
        kwargs["validation_data"] = (digits.x_val, digits.y_val)
    tuner.search(digits.x_train[:64], digits.y_train[:64], epochs=1, batch_size=32,
                 verbose=0, **kwargs)
    assert tuner.models_built == 0  # Keras Tuner's own run_trial, which passes them on
    assert [t.status for t in tuner.oracle.trials.values()] == ["COMPLETED"] * 2


@pytest.mark.slow
def test_hyperband_continues_trials_from_their_checkpoints_on_the_kept_model(tmp_path):
    ds = cnnzoo.data.load_dataset("digits", num_samples=200, seed=0)
    tuner = _search(ds, tmp_path, _hypermodel(ds), kind="hyperband", epochs=3)
    trials = list(tuner.oracle.trials.values())
    assert all(t.status == "COMPLETED" for t in trials), [t.message for t in trials]
    # Hyperband's second round continues a first-round trial from its checkpoint.
    continued = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert continued
    assert tuner.models_built == 1
    # A continued trial starts from its parent's best weights, not from scratch.
    trial = continued[0]
    parent = tuner.oracle.trials[trial.hyperparameters.values["tuner/trial_id"]]
    assert trial.metrics.get_last_value("epochs") == trial.hyperparameters.values["tuner/epochs"]
    assert parent.status == "COMPLETED"


def test_the_kept_model_is_freed_when_the_search_ends(digits, tmp_path):
    import gc
    import weakref

    built = []

    class Watched(ZooHyperModel):
        variable_hyperparameters = ZooHyperModel.variable_hyperparameters  # still true

        def build(self, hp):
            model = super().build(hp)
            built.append(weakref.ref(model))
            return model

    hypermodel = Watched("simple_cnn", input_shape=digits.input_shape,
                         num_classes=digits.num_classes)
    tuner = _search(digits, tmp_path, hypermodel, max_trials=2, epochs=1)
    assert tuner.models_built == 1 and len(built) >= 2  # Keras Tuner builds one too
    gc.collect()
    assert [ref() for ref in built] == [None] * len(built)
