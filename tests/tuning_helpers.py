"""Helpers shared by the tuning tests (test files do not import each other)."""

import keras_tuner as kt

from tuning import state


def make_oracle(folder, max_trials=3):
    """An atomic random-search oracle over one dropout rate, its state in `folder`."""
    oracle = state.oracle_class(kt.oracles.RandomSearchOracle)(
        objective="val_accuracy", max_trials=max_trials, seed=1,
        max_consecutive_failed_trials=None)
    oracle._set_project_dir(str(folder), "keras_tuner")
    hp = kt.HyperParameters()
    hp.Float("dropout_rate", 0.0, 0.7, step=0.1)
    oracle.update_space(hp)
    return oracle


def finish(oracle, trial, accuracy=0.9):
    """Reports `accuracy` for `trial` and ends it as completed."""
    oracle.update_trial(trial.trial_id, {"val_accuracy": accuracy})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
