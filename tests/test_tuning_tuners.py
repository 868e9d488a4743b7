"""The tuners: seeds, reported metrics, trial counts, oracles, resume and quiet progress."""

import io
import types

import keras
import keras_tuner as kt
import pytest

from tuning import _compat_keras_tuner as compat
from tuning import progress, reuse, tuners


def _history(**logs):
    history = keras.callbacks.History()
    history.history = {k: list(v) for k, v in logs.items()}
    history.epoch = list(range(len(next(iter(logs.values())))))
    return history


def test_the_metrics_reported_are_those_of_each_executions_best_epoch():
    fake = types.SimpleNamespace(oracle=types.SimpleNamespace(
        objective=kt.Objective("val_loss", "min")))
    one = _history(val_loss=[0.9, 0.4, 0.6], accuracy=[0.5, 0.7, 0.8])
    two = _history(val_loss=[0.5, 0.7, 0.8], accuracy=[0.6, 0.6, 0.9])
    metrics = tuners.ZooTunerMixin.summarize(fake, [one, two], seconds=2.5)
    # Best epochs 2 and 1: their metrics, averaged over the executions.
    assert metrics == pytest.approx({"val_loss": 0.45, "accuracy": 0.65, "best_epoch": 1.5,
                                     "epochs": 3.0, "seconds": 2.5})
    assert tuners.ZooTunerMixin.summarize(fake, one, seconds=1.0)["best_epoch"] == 2.0


def test_expected_trials():
    random = tuners.make_oracle("random", max_trials=7)
    assert tuners.expected_trials(random) == 7
    hyperband = tuners.make_oracle("hyperband", epochs=9)
    assert tuners.expected_trials(hyperband) == compat.hyperband_trials_per_iteration(hyperband)
    hyperband.hyperband_iterations = float("inf")
    assert tuners.expected_trials(hyperband) is None


def test_oracles_are_atomic_seeded_from_the_search_and_never_retry():
    with pytest.raises(ValueError, match="Received: tuner='grid'"):
        tuners.make_oracle("grid")
    bayesian = tuners.make_oracle("bayesian", max_trials=10, seed=4)
    assert type(bayesian).__name__ == "AtomicBayesianOptimizationOracle"
    assert bayesian.seed == 5 and bayesian.num_initial_points == 5
    assert bayesian.max_retries_per_trial == 0
    assert tuners.make_oracle("bayesian", max_trials=3).num_initial_points == 2
    assert tuners.make_oracle("hyperband", epochs=4).max_epochs == 4


def test_every_zoo_tuner_reuses_models_and_seeds_trials_by_number(tmp_path):
    tuner = tuners.make_tuner("random", lambda hp: None, directory=tmp_path, max_trials=2,
                              seed=3, quiet=True)
    assert isinstance(tuner, reuse.ReuseMixin) and isinstance(tuner, kt.RandomSearch)
    trial = kt.engine.trial.Trial(kt.HyperParameters(), trial_id="4")
    assert tuner.trial_seed(trial) == 3000 + progress.trial_number("4")


def test_quiet_silences_progress_and_keras_tuners_reload_message(tmp_path):
    def build(hp):
        hp.Choice("x", [1, 2])
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile("adam", "mse")
        return model

    stream = io.StringIO()
    tuner = tuners.make_tuner("random", build, directory=tmp_path, max_trials=1,
                              objective="loss", stream=stream, quiet=True)
    assert compat.display(tuner.oracle).enabled is False
    tuner.save()
    # Killed between the oracle's state and the tuner's: it still resumes.
    (tmp_path / tuners.PROJECT_NAME / "tuner0.json").unlink()
    again = tuners.make_tuner("random", build, directory=tmp_path, max_trials=1,
                              objective="loss", stream=stream, quiet=True)
    assert again.resumed and stream.getvalue() == ""
    loud = tuners.make_tuner("random", build, directory=tmp_path, max_trials=1,
                             objective="loss", stream=stream)
    assert loud.resumed and "Reloading Tuner" in stream.getvalue()
