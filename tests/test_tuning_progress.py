"""Progress lines: trial n of N, its values, how it ended, the best so far."""

import io

import keras_tuner as kt

from tests.tuning_helpers import finish, make_oracle
from tuning import _compat_keras_tuner as compat
from tuning import progress


def test_trial_numbers_count_from_one():
    assert progress.trial_number("00") == 1
    assert progress.trial_number("12") == 13
    assert progress.trial_number("x") is None and progress.trial_number(None) is None


def test_values_are_short_and_keras_tuners_own_are_hidden():
    values = {"dropout_rate": 0.30000000000000004, "dropout_type": "spatial",
              "tuner/epochs": 3, "learning_rate": 0.000123456}
    assert progress.format_values(values) == \
        "dropout_rate=0.3 dropout_type=spatial learning_rate=0.0001235"
    assert progress.format_values({"tuner/epochs": 3}) == "defaults"


def test_a_failure_reason_is_the_tracebacks_last_line_without_module_paths():
    message = ("Traceback (most recent call last):\n  File ...\n"
               "keras_tuner.src.errors.FailedTrialError: loss became nan at epoch 2\n\n")
    assert progress.failure_reason(message) == "FailedTrialError: loss became nan at epoch 2"
    assert progress.failure_reason("") is None and progress.failure_reason("\n \n") is None


def _display(tmp_path, total=3):
    oracle = make_oracle(tmp_path, max_trials=total)
    stream = io.StringIO()
    display = progress.Progress(oracle, total=total, stream=stream)
    compat.set_display(oracle, display)  # as tuning.tuners.make_tuner does
    return oracle, display, stream


def test_one_line_as_a_trial_starts_and_one_as_it_ends_with_the_best_so_far(tmp_path):
    oracle, display, stream = _display(tmp_path)
    first = oracle.create_trial("tuner0")
    assert stream.getvalue() == f"Trial 1/3: {progress.format_values(first.hyperparameters.values)}\n"
    oracle.update_trial(first.trial_id, {"val_accuracy": 0.75, "val_loss": 0.5,
                                         "seconds": 1.25})
    first.status = "COMPLETED"
    oracle.end_trial(first)
    last = stream.getvalue().splitlines()[-1]
    assert last == ("Trial 1/3 done in 1.2 s: val_accuracy=0.7500 val_loss=0.5000 | best so far "
                    "val_accuracy=0.7500 (trial 1)")
    second = oracle.create_trial("tuner0")
    second.status = "FAILED"
    second.message = "ValueError: bad\n"
    oracle.end_trial(second)
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("Trial 2/3 done in ") and last.endswith(
        ": FAILED: ValueError: bad | best so far val_accuracy=0.7500 (trial 1)")
    # Silenced (a quiet search), it prints nothing; its state is not saved.
    display.enabled = False
    finish(oracle, oracle.create_trial("tuner0"))
    assert "Trial 3" not in stream.getvalue()
    assert display.get_state() == {"search_start": None, "trial_start": {},
                                   "trial_number": {}}


def test_a_failed_trial_without_a_message_says_where_its_reason_is(tmp_path):
    oracle, _, stream = _display(tmp_path, total=None)
    trial = oracle.create_trial("tuner0")
    trial.status = "FAILED"
    oracle.end_trial(trial)
    assert stream.getvalue().splitlines()[-1].endswith(f"FAILED: {progress.NO_REASON}")
    assert stream.getvalue().startswith("Trial 1: ")  # no total known


def test_hyperband_epochs_and_a_workers_line(tmp_path):
    oracle, display, stream = _display(tmp_path)
    hp = kt.HyperParameters()
    hp.values = {"dropout_rate": 0.1, "tuner/epochs": 3, "tuner/initial_epoch": 1}
    trial = kt.engine.trial.Trial(hp, trial_id="4")
    display.on_trial_begin(trial)
    assert stream.getvalue() == "Trial 5/3: dropout_rate=0.1 [epochs 1->3]\n"
    assert progress.worker_line("worker1", trial, total=9) == \
        "worker1 runs trial 5/9: dropout_rate=0.1"
