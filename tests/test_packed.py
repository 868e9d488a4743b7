"""Packed trials: tower k ends exactly where trial k trained alone ends; trials reported singly."""

import json
import os

import keras
import keras_tuner as kt
import numpy as np
import pytest

import cnnzoo.data
from cnnzoo import input_pipeline
from tuning import packed, tuners
from tuning.hypermodel import ZooHyperModel

EPOCHS = 2
# Towers and lone trials run the same float32 kernels on the same batches;
# the tolerance only allows for floating-point reassociation (they agree bit
# for bit on this CPU).
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def digits():
    return cnnzoo.data.load_dataset("digits", num_samples=300, seed=0)


def _hypermodel(ds, **kwargs):
    return ZooHyperModel("simple_cnn", input_shape=ds.input_shape, num_classes=ds.num_classes,
                         **kwargs)


def _search(ds, folder, pack, max_trials=3, hypermodel=None, epochs=EPOCHS):
    tuner = tuners.make_tuner(
        "random", hypermodel or _hypermodel(ds), directory=folder, max_trials=max_trials,
        seed=0, tuner_class=packed.packed_tuner_class(kt.RandomSearch, pack), quiet=True)
    tuner.search(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val),
                 epochs=epochs, batch_size=32, verbose=0)
    return tuner


def _alone(tuner, trial, ds, hypermodel):
    """Trial `trial` trained alone, by hand: seeded as the tuner seeds it."""
    keras.utils.set_random_seed(tuner.trial_seed(trial))
    model = hypermodel.build(trial.hyperparameters.copy())
    train = input_pipeline.train_data(ds.x_train, ds.y_train, batch_size=32, seed=tuner.seed)
    val = input_pipeline.eval_data(ds.x_val, ds.y_val)["x"]
    history = model.fit(**train, validation_data=val, epochs=EPOCHS, verbose=0)
    return model, history.history


def _assert_ends_as_alone(tuner, trial, ds, hypermodel):
    """The tuner's record of `trial` is that of the trial trained alone, by hand."""
    model, history = _alone(tuner, trial, ds, hypermodel)
    # Best epoch's metrics, as the tuner reports them.
    best = int(np.argmax(history["val_accuracy"]))
    for name in ("val_accuracy", "val_loss", "accuracy", "loss"):
        np.testing.assert_allclose(trial.metrics.get_last_value(name), history[name][best],
                                   rtol=RTOL, atol=ATOL, err_msg=name)
    if best == EPOCHS - 1:
        # The checkpoint holds the best epoch's weights: compare when it is the last.
        restored = tuner.load_model(trial)
        for a, b in zip(restored.get_weights(), model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    keras.backend.clear_session()


@pytest.mark.slow
def test_tower_k_ends_with_the_weights_and_metrics_of_trial_k_alone(digits, tmp_path):
    hypermodel = _hypermodel(digits)
    tuner = _search(digits, tmp_path / "packed", pack=3)
    trials = [tuner.oracle.trials[t] for t in sorted(tuner.oracle.trials)]
    assert [t.status for t in trials] == ["COMPLETED"] * 3
    # Three different candidates went into one pack.
    assert len({json.dumps(t.hyperparameters.values, sort_keys=True) for t in trials}) == 3
    assert all(t.metrics.get_last_value("pack_size") == 3 for t in trials)
    for trial in trials:
        _assert_ends_as_alone(tuner, trial, digits, hypermodel)


@pytest.mark.slow
def test_packed_and_one_at_a_time_searches_agree_and_resume(digits, tmp_path):
    one = _search(digits, tmp_path / "one", pack=1, max_trials=2, epochs=1)
    two = _search(digits, tmp_path / "two", pack=2, max_trials=2, epochs=1)
    for trial_id, trial in one.oracle.trials.items():
        other = two.oracle.trials[trial_id]
        assert other.hyperparameters.values == trial.hyperparameters.values
        assert other.score == pytest.approx(trial.score, rel=RTOL, abs=ATOL)
    # Each packed trial has its own folder and checkpoint, as single trials do.
    for trial_id in two.oracle.trials:
        folder = tmp_path / "two" / tuners.PROJECT_NAME / f"trial_{trial_id}"
        assert (folder / "trial.json").exists()
        assert (folder / "checkpoint.weights.h5").exists()
    # Resuming a finished packed search with a larger budget runs only the new trials.
    resumed = _search(digits, tmp_path / "two", pack=2, max_trials=3, epochs=1)
    assert resumed.resumed and resumed.trials_run == ["2"]
    assert len(resumed.oracle.trials) == 3


def test_trials_group_by_everything_but_dropout():
    def trial(**values):
        hp = kt.HyperParameters()
        hp.values = values
        return kt.engine.trial.Trial(hp, trial_id=str(len(values)))

    a = trial(dropout_rate=0.1, block_dropout_rate=0.2, dropout_type="standard",
              learning_rate=1e-3)
    b = trial(dropout_rate=0.5, block_dropout_rate=0.0, dropout_type="spatial",
              learning_rate=1e-3)
    c = trial(dropout_rate=0.1, block_dropout_rate=0.2, dropout_type="standard",
              learning_rate=1e-2)
    d = trial(dropout_rate=0.3, learning_rate=1e-3, **{"tuner/epochs": 2,
                                                       "tuner/trial_id": "x"})
    e = trial(dropout_rate=0.3, learning_rate=1e-3, **{"tuner/epochs": 2,
                                                       "tuner/trial_id": "y"})
    assert packed.group_trials([a, b, c, d, e]) == [[a, b], [c], [d, e]]


def test_tower_metric_names():
    assert packed.tower_metric("val_accuracy", "tower_1") == "val_tower_1_accuracy"
    assert packed.tower_metric("loss", "tower_0") == "tower_0_weighted_loss"
    assert packed.tower_metric("val_loss", "tower_2") == "val_tower_2_weighted_loss"
    assert packed.tower_metric("val_loss", None) == "val_loss"


@pytest.mark.parametrize("pack", [0, 65, 2.0, "4"])
def test_bad_pack(digits, tmp_path, pack):
    with pytest.raises(ValueError, match="Received: pack="):
        tuners.make_tuner("random", _hypermodel(digits), directory=tmp_path, max_trials=1,
                          tuner_class=packed.packed_tuner_class(kt.RandomSearch, pack),
                          quiet=True)


@pytest.mark.parametrize("pack", [0, 65, 2.0, "4", "abc", True, None])
def test_search_refuses_a_bad_pack_before_anything_runs(tmp_path, pack):
    import tuning

    with pytest.raises(ValueError, match=r"Expected `pack` to be 'auto' or an integer in "
                                         r"\[1, 64\]\. Received: pack="):
        tuning.search(out=tmp_path, pack=pack, quiet=True)
    assert not os.listdir(tmp_path)


def test_cli_accepts_pack():
    import argparse

    from cnnzoo.commands import tune

    parser = argparse.ArgumentParser()
    tune.add_arguments(parser)
    assert parser.parse_args(["--pack", "4"]).pack == 4
    assert parser.parse_args(["--pack", "auto"]).pack == "auto"
    assert parser.parse_args(["--pack", "x"]).pack == "x"  # refused by tuning.search
    assert parser.parse_args([]).pack == "auto"
    assert os.path.basename(packed.__file__) == "packed.py"


SMALL_STEP = 32 * 700_000  # simple_cnn on 8x8 digits at batch 32: 0.02 GFLOP forward
LONG = packed.AUTO_PACK_MIN_STEPS  # a search just long enough to pack on a GPU


@pytest.mark.parametrize("kwargs, k", [
    ({"accelerator": False}, 1),  # a CPU with TensorFlow's default threads
    ({"accelerator": False, "search_steps": 100 * LONG}, 1),
    ({}, packed.AUTO_PACK),  # trials unknown
    ({"max_trials": 16}, 8),
    ({"max_trials": 10}, 5),  # two packs of 5, not 8 and 2
    ({"max_trials": 3}, 3),
    ({"max_trials": 1}, 1),
    # The default search (10 trials x 10 epochs x 40 steps of digits) is short.
    ({"max_trials": 10, "search_steps": 4_000}, 1),
    ({"max_trials": 16, "search_steps": LONG - 1}, 1),
    ({"search_steps": None}, 1),  # Hyperband: length unknown
    ({"tuner": "bayesian", "max_trials": 16}, 1),
    ({"distribution": "mirrored"}, 1),
    ({"step_flops": packed.AUTO_PACK_FLOPS / 4}, 4),
    ({"step_flops": packed.AUTO_PACK_FLOPS}, 1),
    ({"step_flops": None}, 1),
])
def test_auto_pack_packs_small_steps_of_long_searches_on_accelerators(kwargs, k):
    args = {"accelerator": True, "tuner": "random", "step_flops": SMALL_STEP,
            "search_steps": LONG, **kwargs}
    chosen, reason = packed.auto_pack(**args)
    assert chosen == k, reason
    assert reason


CPU_LONG = packed.AUTO_PACK_CPU_MIN_STEPS


@pytest.mark.parametrize("kwargs, k", [
    # The default search (10 trials x 10 epochs x 40 steps of digits) on 2 cores.
    ({"max_trials": 10, "search_steps": 4_000}, 2),
    ({}, 2),
    ({"cores": 16, "max_trials": 10}, 5),  # at most AUTO_PACK, evened out: 5 and 5
    ({"cores": 16}, packed.AUTO_PACK),
    ({"cores": 3, "max_trials": 9}, 3),
    ({"max_trials": 1}, 1),
    ({"cores": 1}, 1),
    ({"threads": None}, 1),  # TensorFlow's default: each op on every core
    ({"threads": 2}, 1),
    ({"search_steps": CPU_LONG - 1}, 1),
    ({"search_steps": None}, 1),  # Hyperband
    ({"tuner": "bayesian"}, 1),
    ({"distribution": "mirrored"}, 1),
    ({"step_flops": None}, 2),  # not needed on a CPU: threads=1 says the step is small
    ({"cores": 16, "step_flops": packed.AUTO_PACK_FLOPS / 3}, 3),  # threads=1 asked
    ({"step_flops": packed.AUTO_PACK_FLOPS}, 1),
])
def test_auto_pack_packs_one_trial_per_core_on_a_cpu_with_one_thread_per_op(kwargs, k):
    args = {"accelerator": False, "tuner": "random", "step_flops": SMALL_STEP,
            "search_steps": CPU_LONG, "threads": 1, "cores": 2, **kwargs}
    chosen, reason = packed.auto_pack(**args)
    assert chosen == k, reason
    if k > 1:
        assert reason.startswith(f"CPU with one thread per op and {args['cores']} cores, "
                                 f"over {args['search_steps']:,} training steps")


def test_auto_pack_counts_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert packed.cpu_cores() == 3
    chosen, _ = packed.auto_pack(accelerator=False, tuner="random", step_flops=SMALL_STEP,
                                 search_steps=CPU_LONG, threads=1)
    assert chosen == 3


def test_auto_pack_on_a_cpu_packs_when_the_search_runs_ops_on_one_thread(digits, tmp_path,
                                                                         monkeypatch):
    """The search hands the threads it set to `auto_pack`.

    This process's TensorFlow has started with its default threads, so
    `configure` is made to report the one thread a fresh `cnnzoo tune`
    sets for this model; the length threshold is lowered to this search's.
    """
    import io

    import tuning
    from cnnzoo import runtime

    configure = runtime.configure

    def one_thread(*args, **kwargs):
        return dict(configure(*args, **kwargs), threads=1)

    monkeypatch.setattr(runtime, "configure", one_thread)
    monkeypatch.setattr(packed, "cpu_cores", lambda: 2)
    monkeypatch.setattr(packed, "AUTO_PACK_CPU_MIN_STEPS", 12)
    stream = io.StringIO()
    result = tuning.search(out=tmp_path, stream=stream, max_trials=4, epochs=1,
                           num_samples=120, precision="float32", export=False)
    said = stream.getvalue()
    assert "intra-op threads: 1" in said
    assert ("Packing 2 trials side by side per model (CPU with one thread per op and 2 "
            "cores, over 12 training steps)") in said
    assert [t["pack_size"] for t in result.trials] == [2.0] * 4
    assert json.loads((tmp_path / "results.json").read_text())["search"]["pack"] == 2

    monkeypatch.setattr(runtime, "configure", configure)  # the default threads: one at a time
    result = tuning.search(out=tmp_path / "default", max_trials=4, epochs=1, num_samples=120,
                           precision="float32", export=False, quiet=True)
    assert [t["pack_size"] for t in result.trials] == [1.0] * 4


@pytest.mark.multibackend
def test_auto_pack_on_an_accelerator_trains_the_trials_packed(digits, tmp_path, monkeypatch):
    """The default search on a (pretended) GPU packs the small trials of a long search.

    `runtime.accelerators` is the one place the search learns of a GPU; the
    training itself runs on this machine's CPU, in float32 (without XLA on
    TensorFlow; JAX always compiles). This search is short (3 trials x 1
    epoch x 3 steps), so it trains one trial at a time; with the length
    threshold lowered to its 9 steps it packs.
    """
    import io

    import tuning
    from cnnzoo import runtime

    monkeypatch.setattr(runtime, "accelerators", lambda: (("gpu", "pretended"),))
    args = {"max_trials": 3, "epochs": 1, "num_samples": 120, "precision": "float32",
            "jit": False, "export": False}
    stream = io.StringIO()
    result = tuning.search(out=tmp_path / "short", stream=stream, **args)
    assert "Packing" not in stream.getvalue()
    assert [t["pack_size"] for t in result.trials] == [1.0, 1.0, 1.0]

    monkeypatch.setattr(packed, "AUTO_PACK_MIN_STEPS", 9)
    stream = io.StringIO()
    result = tuning.search(out=tmp_path, stream=stream, **args)
    assert "Packing 3 trials side by side per model (accelerator: 3 trials of" in \
        stream.getvalue()
    assert "over 9 training steps" in stream.getvalue()
    assert [t["pack_size"] for t in result.trials] == [3.0, 3.0, 3.0]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["search"]["pack"] == 3
    assert saved["search"]["devices"] == ["pretended"]

    monkeypatch.setattr(runtime, "accelerators", lambda: ())
    result = tuning.search(out=tmp_path / "cpu", max_trials=2, epochs=1, num_samples=120,
                           precision="float32", export=False, quiet=True)
    assert [t["pack_size"] for t in result.trials] == [1.0, 1.0]
    saved = json.loads((tmp_path / "cpu" / "results.json").read_text())
    assert saved["search"]["pack"] == 1


@pytest.mark.slow
@pytest.mark.multibackend
@pytest.mark.parametrize("pack", [1, 2])
def test_later_trials_reuse_the_compiled_model_and_end_as_fresh_ones_do(digits, tmp_path,
                                                                        pack):
    # Four trials, differing only in dropout: one compiled model trains them
    # all (reset between packs from freshly built ones), and every trial ends
    # with the weights and metrics of its own fresh model trained alone.
    hypermodel = _hypermodel(digits)
    tuner = _search(digits, tmp_path / "reused", pack=pack, max_trials=4,
                    hypermodel=hypermodel)
    assert tuner.models_built == 1
    trials = [tuner.oracle.trials[t] for t in sorted(tuner.oracle.trials)]
    assert [t.status for t in trials] == ["COMPLETED"] * 4
    assert len({json.dumps(t.hyperparameters.values, sort_keys=True) for t in trials}) == 4
    for trial in trials[pack:]:  # the trials trained by the reused model
        _assert_ends_as_alone(tuner, trial, digits, hypermodel)
    # Without reuse, a model per pack, and the same results.
    fresh = tuners.make_tuner(
        "random", hypermodel, directory=tmp_path / "fresh", max_trials=4, seed=0,
        tuner_class=packed.packed_tuner_class(kt.RandomSearch, pack), quiet=True)
    fresh.reuse = False
    fresh.search(digits.x_train, digits.y_train, validation_data=(digits.x_val, digits.y_val),
                 epochs=EPOCHS, batch_size=32, verbose=0)
    assert fresh.models_built == 4 // pack
    for trial_id, trial in fresh.oracle.trials.items():
        assert trial.score == pytest.approx(tuner.oracle.trials[trial_id].score, rel=RTOL,
                                            abs=ATOL)


@pytest.mark.parametrize("pack", [1, 2])
def test_a_search_traces_its_training_step_once(digits, tmp_path, monkeypatch, pack):
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
    tuner = _search(digits, tmp_path, pack=pack, max_trials=4, epochs=1)
    assert tuner.models_built == 1
    assert len(traces) == 1, traces
    assert tf_seeds == []


def test_other_settings_get_their_own_model_and_its_memory_is_freed(digits, tmp_path):
    # A searched learning rate changes the compiled optimizer: trials with
    # other rates cannot share a model. Each model gets one memory window,
    # closed (session cleared) when the next model replaces it.
    events = []

    class Memory:
        def begin(self):
            events.append("begin")

        def end(self):
            events.append("end")
            keras.backend.clear_session()

    hypermodel = _hypermodel(digits, learning_rate=[1e-3, 1e-2], dropout_rate=[0.0, 0.5],
                             block_dropout_rate=0.0, dropout_type="standard")
    tuner = tuners.make_tuner(
        "random", hypermodel, directory=tmp_path, max_trials=4, seed=0,
        tuner_class=packed.packed_tuner_class(kt.RandomSearch, 1), quiet=True)
    tuner.model_memory = Memory()
    tuner.search(digits.x_train[:64], digits.y_train[:64],
                 validation_data=(digits.x_val, digits.y_val), epochs=1, batch_size=32,
                 verbose=0)
    rates = [t.hyperparameters.values["learning_rate"]
             for _, t in sorted(tuner.oracle.trials.items())]
    assert len(rates) == 4 and len(set(rates)) == 2
    changes = 1 + sum(a != b for a, b in zip(rates, rates[1:]))
    assert tuner.models_built == changes
    assert events == ["begin", "end"] * changes
    assert tuner._warm is None


@pytest.mark.slow
def test_packed_hyperband_continues_trials_from_their_checkpoints(tmp_path):
    ds = cnnzoo.data.load_dataset("digits", num_samples=200, seed=0)
    tuner = tuners.make_tuner(
        "hyperband", _hypermodel(ds), directory=tmp_path, epochs=3, seed=0,
        tuner_class=packed.packed_tuner_class(kt.Hyperband, 3), quiet=True)
    tuner.search(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val), epochs=3,
                 batch_size=32, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert all(t.status == "COMPLETED" for t in trials), [t.message for t in trials]
    # Hyperband's second round continues a first-round trial from its checkpoint.
    continued = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert continued
    assert max(t.metrics.get_last_value("pack_size") for t in trials) > 1


def test_each_tower_checkpoints_its_own_best_epoch_once_training_ends(tmp_path):
    towers = [keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]) for _ in range(2)]
    paths = [str(tmp_path / f"t{k}.weights.h5") for k in range(2)]
    callback = packed._TowerCallback(towers, ["tower_0", "tower_1"],
                                     kt.Objective("val_accuracy", "max"), paths)
    callback.set_model(towers[0])
    # Tower 0 is best at epoch 2 of 3; tower 1's loss turns NaN at epoch 3.
    history = [(0.5, 0.6, 1.0), (0.9, 0.7, 1.0), (0.7, 0.8, float("nan"))]
    snapshots = []
    for epoch, (acc0, acc1, loss1) in enumerate(history):
        for tower in towers:
            tower.set_weights([w + 1.0 for w in tower.get_weights()])
        snapshots.append([w.copy() for w in towers[0].get_weights()])
        callback.on_epoch_end(epoch, {"val_tower_0_accuracy": acc0, "val_tower_1_accuracy": acc1,
                                      "tower_1_weighted_loss": loss1})
    assert not any(os.path.exists(p) for p in paths)  # nothing written per epoch
    callback.on_train_end()
    restored = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    restored.load_weights(paths[0])
    for a, b in zip(restored.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)
    assert callback.reasons == [None, "loss became nan at epoch 3"]
    assert not os.path.exists(paths[1])  # a failed trial keeps no checkpoint


def _tiny(optimizer):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


def test_unpackable_names_what_would_couple_or_mix_the_towers():
    same = [_tiny(keras.optimizers.Adam(1e-3)) for _ in range(2)]
    assert packed.unpackable(same) is None
    rates = [_tiny(keras.optimizers.Adam(1e-3)), _tiny(keras.optimizers.Adam(1e-2))]
    assert "learning rates" in packed.unpackable(rates)
    settings = [_tiny(keras.optimizers.Adam(1e-3)), _tiny(keras.optimizers.Adam(1e-3, beta_1=0.8))]
    assert "compiled differently" in packed.unpackable(settings)
    clipped = [_tiny(keras.optimizers.Adam(1e-3, global_clipnorm=1.0)) for _ in range(2)]
    assert "global gradient norm" in packed.unpackable(clipped)
    # What Keras compiles with under the mixed_float16 policy.
    scaled = [_tiny(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3)))
              for _ in range(2)]
    assert "loss scale" in packed.unpackable(scaled)


def test_a_pack_of_towers_compiled_differently_trains_one_at_a_time(digits, tmp_path):
    # A build(hp) may derive compile settings from a dropout value, which
    # packing groups by; such towers cannot share the packed model's optimizer.
    def build(hp):
        rate = hp.Choice("dropout_rate", [0.0, 0.5])
        model = keras.Sequential([keras.Input(digits.input_shape), keras.layers.Flatten(),
                                  keras.layers.Dropout(rate),
                                  keras.layers.Dense(digits.num_classes, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(1e-3 if rate else 1e-2),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = tuners.make_tuner(
        "random", build, directory=tmp_path, max_trials=2, seed=0,
        tuner_class=packed.packed_tuner_class(kt.RandomSearch, 2), quiet=True)
    tuner.search(digits.x_train[:64], digits.y_train[:64],
                 validation_data=(digits.x_val, digits.y_val), epochs=1, batch_size=32,
                 verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len({t.hyperparameters.values["dropout_rate"] for t in trials}) == 2
    assert [t.status for t in trials] == ["COMPLETED"] * 2, [t.message for t in trials]
    assert [t.metrics.get_last_value("pack_size") for t in trials] == [1.0, 1.0]


def test_loss_weights_make_towers_unpackable():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", loss_weights=0.25)
    assert "loss weights" in packed.unpackable([model, model])


class _OwnFit(ZooHyperModel):
    def fit(self, hp, model, *args, **kwargs):
        return super().fit(hp, model, *args, **kwargs)


class _OwnBuild(ZooHyperModel):
    def build_model(self, **values):
        return super().build_model(**values)


class _OwnBuildAndKey(_OwnBuild):
    def reuse_key(self, values):
        return super().reuse_key(values)


def test_which_hypermodels_the_packed_tuner_trains(digits, tmp_path):
    kwargs = {"input_shape": digits.input_shape, "num_classes": digits.num_classes}
    assert packed.unpackable_hypermodel(ZooHyperModel("simple_cnn", **kwargs)) is None
    assert packed.unpackable_hypermodel(_OwnBuildAndKey("simple_cnn", **kwargs)) is None
    assert packed.own_training(_OwnBuild("simple_cnn", **kwargs)) is None
    assert "build_model() is not the one its reuse_key() describes" in \
        packed.unpackable_hypermodel(_OwnBuild("simple_cnn", **kwargs))
    assert "fit() of its own" in packed.own_training(_OwnFit("simple_cnn", **kwargs))
    plain = kt.HyperModel()
    assert packed.own_training(plain) is None and packed.unpackable_hypermodel(plain) is None
    # The tuner refuses what it would train otherwise than asked.
    for hypermodel, pack in ((_OwnFit("simple_cnn", **kwargs), 1),
                             (_OwnBuild("simple_cnn", **kwargs), 2)):
        with pytest.raises(ValueError, match=r"zoo_tuner_class.*Received: hypermodel='_Own"):
            tuners.make_tuner("random", hypermodel, directory=tmp_path / "t", max_trials=2,
                              tuner_class=packed.packed_tuner_class(kt.RandomSearch, pack),
                              quiet=True)
    # A kept model trains the next trial only where the key describes the build.
    tuner = tuners.make_tuner("random", _OwnBuild("simple_cnn", **kwargs),
                              directory=tmp_path / "kept", max_trials=2,
                              tuner_class=packed.packed_tuner_class(kt.RandomSearch, 1),
                              quiet=True)
    trial = tuner.oracle.create_trial("tuner0")
    assert tuner._reuse_key([trial]) is None


@pytest.mark.parametrize("kwargs, name", [
    ({"callbacks": [keras.callbacks.History()]}, "callbacks"),
    ({"validation_split": 0.2}, "validation_split"),
    ({"sample_weight": np.ones(8)}, "sample_weight"),
    ({"validation_data": object()}, "validation_data"),
], ids=["callbacks", "validation_split", "sample_weight", "validation_data"])
def test_packed_search_refuses_what_it_would_drop(digits, tmp_path, kwargs, name):
    tuner = tuners.make_tuner("random", _hypermodel(digits), directory=tmp_path, max_trials=2,
                              tuner_class=packed.packed_tuner_class(kt.RandomSearch, 2),
                              quiet=True)
    with pytest.raises(ValueError, match=f"Received: {name}="):
        tuner.search(digits.x_train[:8], digits.y_train[:8], epochs=1, **kwargs)
    assert not tuner.oracle.trials  # refused before any trial
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((digits.x_train[:8], digits.y_train[:8]))
    with pytest.raises(ValueError, match="two arrays.*Received: x='"):
        tuner.search(dataset.batch(4), epochs=1)
    tuner.search(digits.x_train[:8], digits.y_train[:8], epochs=1, callbacks=[], verbose=0,
                 validation_data=(digits.x_val[:8], digits.y_val[:8]), batch_size=4)
    assert len(tuner.oracle.trials) == 2


def test_packed_tuner_is_public():
    import tuning

    assert "PackedTuner" in tuning.__all__ and tuning.PackedTuner is packed.PackedTuner
