"""Every private Keras Tuner API the search uses, behind one door.

Keras Tuner (1.4.8 when this was written) has no public way to do a few
things the search needs: replace the oracle's display, read and mend the
queue of trials to run again, write a trial's file atomically, build a
trial's model as the tuner would (Hyperband loads the weights a continued
trial starts from there), find a trial's checkpoint, prepare a trial's
callbacks (its TensorBoard folder and HParams summaries), count Hyperband's
trials, give a worker's gRPC client its timeout, and serve an oracle. Each
is reached here and nowhere else, and each has a contract (`CONTRACTS`,
checked by `tests/test_compat_keras_tuner.py`): when a Keras Tuner release
changes one, the contract fails with a message that names the internal and
the installed keras-tuner version, not with an `AttributeError` deep in a
search.

The two hooks Keras Tuner calls on its own (`Oracle._save_trial`,
`Tuner._build_hypermodel`) are overridden by the mixins here, which route
them to methods with public names (`write_trial`, `build_trial`).
"""

import inspect
import os

from cnnzoo import _compat

# Imported without Keras Tuner (which imports Keras and TensorFlow: seconds),
# so that the modules that use it stay light until a search runs.


def version():
    """The installed keras-tuner's version."""
    return _compat.version("keras-tuner")


class KerasTunerChangedError(_compat.LibraryChangedError):
    """A Keras Tuner internal the search relies on is not what it was."""


def _changed(what):
    return _compat.changed("Keras Tuner", "keras-tuner", what, "1.4.8",
                           "tuning/_compat_keras_tuner.py", error=KerasTunerChangedError)


def _attribute(obj, name, what):
    try:
        return getattr(obj, name)
    except AttributeError:
        raise _changed(what) from None


def _calls(function, name):
    """Whether `function`'s source calls `name` (a hook Keras Tuner must still call).

    Keras Tuner's `@synchronized` wrapper keeps the wrapped function in its
    closure (as `func`), without `__wrapped__`.
    """
    inner = inspect.getclosurevars(function).nonlocals.get("func")
    if callable(inner):
        function = inner
    try:
        return name in inspect.getsource(function)
    except (OSError, TypeError):
        return False


# -- the oracle ------------------------------------------------------------------


def set_display(oracle, display):
    """Replaces the oracle's progress display (`Oracle._display`) with `display`."""
    _attribute(oracle, "_display", "Oracle._display (the per-trial display)")
    oracle._display = display


def display(oracle):
    """The oracle's display (`None` where it has none, as a worker's gRPC client)."""
    return getattr(oracle, "_display", None)


def retry_queue(oracle):
    """The oracle's queue of trial IDs to run again (`Oracle._retry_queue`), mutable.

    `create_trial` pops from its end: the last ID runs first.
    """
    queue = _attribute(oracle, "_retry_queue", "Oracle._retry_queue (trials to run again)")
    if not isinstance(queue, list):
        raise _changed("Oracle._retry_queue as a list")
    return queue


class SaveTrialHook:
    """Mixed into an oracle: Keras Tuner's `_save_trial(trial)` calls `write_trial(trial)`."""

    def _save_trial(self, trial):
        self.write_trial(trial)

    def write_trial(self, trial):
        """Writes `trial_<id>/trial.json` (Keras Tuner's own writer by default)."""
        super()._save_trial(trial)


def trial_file(oracle, trial_id):
    """The path of a trial's `trial.json`."""
    folder = _attribute(oracle, "_get_trial_dir", "Oracle._get_trial_dir")(trial_id)
    return os.path.join(folder, "trial.json")


def oracle_file(oracle):
    """The path of the oracle's `oracle.json`."""
    return _attribute(oracle, "_get_oracle_fname", "Oracle._get_oracle_fname")()


def hyperband_trials_per_iteration(oracle):
    """How many trials one Hyperband iteration runs (from its private bracket arithmetic)."""
    brackets = _attribute(oracle, "_get_num_brackets", "HyperbandOracle._get_num_brackets")
    rounds = _attribute(oracle, "_get_num_rounds", "HyperbandOracle._get_num_rounds")
    size = _attribute(oracle, "_get_size", "HyperbandOracle._get_size")
    return sum(size(b, r) for b in range(brackets()) for r in range(rounds(b)))


# -- the tuner -------------------------------------------------------------------


class BuildHook:
    """Mixed into a tuner: Keras Tuner's `_build_hypermodel(hp)` calls `build_trial(hp, build)`.

    `build` is Keras Tuner's own (Hyperband's loads the weights a continued
    trial starts from). Keras Tuner calls the hook from `_try_build` (after
    clearing the session) and from `load_model`.
    """

    def _build_hypermodel(self, hp):
        return self.build_trial(hp, super()._build_hypermodel)

    def build_trial(self, hp, build):
        return build(hp)


def build_model(tuner, hp):
    """A trial's model as the tuner builds it, without clearing the session first."""
    return _attribute(tuner, "_build_hypermodel", "Tuner._build_hypermodel")(hp)


def checkpoint_file(tuner, trial_id):
    """Where Keras Tuner keeps a trial's best-epoch weights (`load_model` reads them)."""
    return _attribute(tuner, "_get_checkpoint_fname", "Tuner._get_checkpoint_fname")(trial_id)


def tuner_file(tuner):
    """The path of the tuner's own state file (`<project>/<tuner id>.json`)."""
    return _attribute(tuner, "_get_tuner_fname", "BaseTuner._get_tuner_fname")()


def save_build_config(tuner, trial_id, model):
    """Writes the trial's `build_config.json`, as Keras Tuner does after each fit.

    `load_model` and Hyperband's continued trials read it on Keras 3.
    """
    from cnnzoo import _atomic

    path = _attribute(tuner, "_get_build_config_fname",
                      "Tuner._get_build_config_fname")(trial_id)
    _atomic.write_json(path, model.get_build_config())


def trial_callbacks(tuner, callbacks, trial):
    """`search`'s callbacks for one trial, as Keras Tuner's `run_trial` makes them.

    A deep copy of each (`Tuner._deepcopy_callbacks`), a `TensorBoard`'s
    `log_dir` set to `<log_dir>/<trial id>/execution0` with TensorBoard's
    HParams callback added after it (`Tuner._configure_tensorboard_dir`, on
    the TensorFlow backend): what a trial trained on a kept compiled model
    (`tuning.reuse`) gets too.
    """
    copied = _attribute(tuner, "_deepcopy_callbacks", "Tuner._deepcopy_callbacks")(callbacks)
    _attribute(tuner, "_configure_tensorboard_dir",
               "Tuner._configure_tensorboard_dir")(copied, trial, 0)
    return copied


# -- the distributed mode ---------------------------------------------------------


def set_client_timeout(seconds):
    """How long a worker's gRPC client waits for each answer of the chief."""
    try:
        from keras_tuner.src.distribute import oracle_client
    except ImportError:
        raise _changed("keras_tuner.src.distribute.oracle_client") from None
    _attribute(oracle_client, "TIMEOUT", "oracle_client.TIMEOUT")
    oracle_client.TIMEOUT = seconds


def client_timeout():
    from keras_tuner.src.distribute import oracle_client

    return oracle_client.TIMEOUT


def oracle_service():
    """`(protos, OracleServicer)`: what serving an oracle over gRPC takes."""
    try:
        from keras_tuner.src import protos
        from keras_tuner.src.distribute.oracle_chief import OracleServicer
    except ImportError:
        raise _changed("keras_tuner.src.protos and distribute.oracle_chief.OracleServicer") \
            from None
    return protos, OracleServicer


# -- contracts ---------------------------------------------------------------------


def _check_oracle():
    import keras_tuner as kt

    oracle = kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=1)
    display(oracle).on_trial_begin  # noqa: B018 - the display's interface
    if not isinstance(retry_queue(oracle), list):
        raise _changed("Oracle._retry_queue")
    if not _calls(kt.Oracle.create_trial, "_retry_queue"):
        raise _changed("Oracle.create_trial taking trials from _retry_queue")
    if not (_calls(kt.Oracle.end_trial, "_save_trial")
            and _calls(kt.Oracle.create_trial, "_save_trial")):
        raise _changed("Oracle.create_trial and end_trial writing trials by _save_trial")
    if not _calls(kt.Oracle.end_trial, "_display.on_trial_end"):
        raise _changed("Oracle.end_trial reporting to its _display")
    for name in ("_get_trial_dir", "_get_oracle_fname"):
        _attribute(oracle, name, f"Oracle.{name}")


def _check_tuner():
    import keras_tuner as kt

    tuner_cls = kt.Tuner
    for name in ("_build_hypermodel", "_get_checkpoint_fname", "_get_build_config_fname",
                 "_get_tuner_fname"):
        _attribute(tuner_cls, name, f"Tuner.{name}")
    if not (_calls(tuner_cls._try_build, "_build_hypermodel")
            and _calls(tuner_cls.load_model, "_build_hypermodel")
            or _calls(tuner_cls.load_model, "_try_build")):
        raise _changed("Tuner._try_build and load_model building through _build_hypermodel")
    if "_build_hypermodel" not in vars(kt.Hyperband) \
            or not _calls(kt.Hyperband._build_hypermodel, "tuner/trial_id"):
        raise _changed("Hyperband._build_hypermodel loading a continued trial's weights")
    if not _calls(tuner_cls._build_and_fit_model, "_get_build_config_fname"):
        raise _changed("Tuner writing build_config.json after each fit")
    for name in ("_deepcopy_callbacks", "_configure_tensorboard_dir"):
        _attribute(tuner_cls, name, f"Tuner.{name}")
        if not _calls(tuner_cls.run_trial, name):
            raise _changed(f"Tuner.run_trial preparing each trial's callbacks by {name}")


class _Silent:
    """A display that prints nothing (for the contracts' own oracles)."""

    verbose = 0

    def on_trial_begin(self, trial):
        pass

    def on_trial_end(self, trial):
        pass

    def get_state(self):
        return {}

    def set_state(self, state):
        pass


def _check_hyperband():
    import tempfile

    import keras_tuner as kt

    oracle = kt.oracles.HyperbandOracle(objective="val_accuracy", max_epochs=9, factor=3,
                                        hyperband_iterations=1, seed=1)
    set_display(oracle, _Silent())
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    with tempfile.TemporaryDirectory() as folder:
        oracle._set_project_dir(folder, "contract")
        oracle.update_space(hp)
        ran = 0
        while ran < 1000:  # one iteration runs every trial the count promises
            trial = oracle.create_trial("contract")
            if trial.status == "STOPPED":
                break
            ran += 1
            oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
    counted = hyperband_trials_per_iteration(oracle)
    if counted != ran:
        raise _changed(f"Hyperband's bracket arithmetic (_get_size and co. count {counted} "
                       f"trials per iteration; the oracle ran {ran})")


def _check_distributed():
    set_client_timeout(client_timeout())
    protos, servicer = oracle_service()
    for name in ("CreateTrial", "EndTrial", "GetTrial"):
        _attribute(servicer, name, f"OracleServicer.{name}")
    _attribute(protos, "get_service_grpc", "protos.get_service_grpc")


def _check_files():
    import keras_tuner as kt

    # `load_model` reads the checkpoint under this name; the search's export
    # and Hyperband's continued trials rely on it.
    if not _calls(kt.Tuner._get_checkpoint_fname, "checkpoint.weights.h5"):
        raise _changed("the checkpoint file name checkpoint.weights.h5")


CONTRACTS = {
    "oracle": _check_oracle,
    "tuner": _check_tuner,
    "hyperband": _check_hyperband,
    "distributed": _check_distributed,
    "files": _check_files,
}
