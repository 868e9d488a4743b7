"""The tuners: Keras Tuner's random, Bayesian and Hyperband searches, made safe.

`make_tuner(kind, hypermodel, ...)` builds the oracle and the tuner the
search driver uses. `TUNERS` maps each `--tuner` name to its Keras Tuner
tuner and oracle classes; `zoo_tuner_class(base)` mixes `ZooTunerMixin` into
any Keras Tuner tuner class (and `tuning.reuse.ReuseMixin` before it, which
trains trials that differ only in values held in variables on one compiled
model), and `make_tuner(..., tuner_class=...)` accepts another, so the choice
of tuner lives in one place.

What `ZooTunerMixin` adds to a Keras Tuner tuner:

- every trial seeded from the search's seed and the trial's number, so a
  trial run again after a kill trains the same way;
- metrics of the best epoch, the trial's time and epochs reported to the
  oracle (they travel through the distributed mode's gRPC too);
- the tuner's state file written atomically, and a search that resumes
  whenever the oracle's state exists (Keras Tuner resumes only when the
  tuner's own file exists, written after the oracle's);
- `clear_session`, `gc` and TensorFlow's leaked gradient functions released
  after every trial (`tuning.memory`), so memory does not grow (with
  `ReuseMixin`, which keeps one compiled model between trials, as each
  compiled model is dropped);
- a clear error after `max_consecutive_failures` failed trials in a row,
  raised after the state is saved (Keras Tuner raises before);
- the chief of a distributed search serves trials with `tuning.distributed`.
"""

import contextlib
import functools
import io
import math
import os
import sys
import time
import warnings

import keras
import keras_tuner as kt

from cnnzoo import _validation as v
from tuning import _compat_keras_tuner as compat
from tuning import distributed, memory, progress, reuse, state

TUNERS = {
    "random": (kt.RandomSearch, kt.oracles.RandomSearchOracle),
    "bayesian": (kt.BayesianOptimization, kt.oracles.BayesianOptimizationOracle),
    "hyperband": (kt.Hyperband, kt.oracles.HyperbandOracle),
}
# Keras Tuner's directory inside `--out`.
PROJECT_NAME = "keras_tuner"


class SearchFailedError(RuntimeError):
    """Too many trials failed in a row; the state on disk is saved."""


class ZooTunerMixin(compat.BuildHook):
    """Mixed into a Keras Tuner tuner class (see the module docstring).

    Args:
        oracle: the oracle (from `make_tuner`).
        hypermodel: a `keras_tuner.HyperModel`.
        seed: the search's seed; trial `n` trains with seed `seed * 1000 + n`.
        max_consecutive_failures: stop (resumably) after this many failed
            trials in a row. `None` never stops.
        stream: where progress is printed. Defaults to `sys.stdout`.
        dtype_policy: the Keras dtype policy every trial's model is built
            under (`"float32"`, `"mixed_bfloat16"`, ...). Defaults to the
            global policy when the tuner is made. Keras's `clear_session`,
            which Keras Tuner calls before each build, resets the global
            policy to float32: the tuner sets it again before each build.
        **kwargs: passed to `keras_tuner.Tuner` (`directory`,
            `project_name`, `overwrite`, `distribution_strategy`, ...).
    """

    def __init__(self, oracle, hypermodel=None, *, seed=0, max_consecutive_failures=3,
                 stream=None, dtype_policy=None, **kwargs):
        self.seed = seed
        self.dtype_policy = (keras.config.dtype_policy().name if dtype_policy is None
                             else keras.dtype_policies.get(dtype_policy).name)
        self.max_consecutive_failures = max_consecutive_failures
        self.stream = stream or sys.stdout
        self.consecutive_failures = 0
        self.trials_run = []
        # trial_id -> the metrics this process reported (a worker's oracle
        # is remote, so its trials do not hold them).
        self.reported = {}
        self.memory = memory.TrialMemory()
        # The chief's patience with a silent worker (`distributed.serve`), and
        # a worker's heartbeat while it searches (`distributed.WorkerSide`).
        self.worker_timeout = distributed.WORKER_TIMEOUT_S
        self._worker_side = None
        # A worker's check once its chief answers (the search's settings
        # check, from `tuning.search`); `None` for none.
        self.before_trials = None
        directory = kwargs.get("directory") or "."
        project_dir = os.path.join(str(directory), kwargs.get("project_name") or PROJECT_NAME)
        tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "tuner0")
        tuner_file = os.path.join(project_dir, f"{tuner_id}.json")
        self.resumed = (not kwargs.get("overwrite") and distributed.current_role() != "worker"
                        and state.has_saved_state(project_dir))
        if self.resumed and not os.path.exists(tuner_file):
            # Killed after the oracle's state was written but before the
            # tuner's: Keras Tuner would start from scratch and lose trials.
            state.write_tuner_state(tuner_file, {})
        # Keras Tuner prints "Reloading Tuner from ..." on stdout: it goes to
        # this tuner's stream, and not at all where progress is off (quiet).
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
        if printed.getvalue() and getattr(compat.display(oracle), "enabled", True):
            self.stream.write(printed.getvalue())

    # -- one trial --------------------------------------------------------------

    def trial_seed(self, trial):
        number = progress.trial_number(trial.trial_id) or 0
        return int(self.seed) * 1000 + number

    def run_trial(self, trial, *args, **kwargs):
        # Keras's own seeding: here `fit` gets the arrays, and shuffles them
        # with TensorFlow's seed. (Keras Tuner clears the session before each
        # build anyway; `ReuseMixin` seeds with `runtime.seed_trial`.)
        keras.utils.set_random_seed(self.trial_seed(trial))
        start = time.perf_counter()
        histories = super().run_trial(trial, *args, **kwargs)
        return self.report(trial, histories, time.perf_counter() - start)

    def report(self, trial, histories, seconds):
        """The metrics `run_trial` returns to Keras Tuner for `trial` (`summarize`), noted."""
        metrics = self.summarize(histories, seconds)
        self.reported[trial.trial_id] = metrics
        return metrics

    def train_again(self, trial, x, y, *, epochs, batch_size):
        """A model of `trial` trained from scratch as this tuner trained it, for `epochs`.

        For exporting a trial whose checkpoint is not readable here.
        """
        keras.utils.set_random_seed(self.trial_seed(trial))
        model = compat.build_model(self, trial.hyperparameters.copy())  # as run_trial's
        model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
        return model

    def summarize(self, histories, seconds):
        """The metrics of each execution's best epoch, averaged, plus time and epochs."""
        objective = self.oracle.objective
        if not isinstance(histories, (list, tuple)):
            histories = [histories]
        rows = []
        for history in histories:
            logs = history.history
            n = len(next(iter(logs.values()))) if logs else 0
            best = 0
            for i in range(n):
                epoch = {k: values[i] for k, values in logs.items()}
                current = {k: values[best] for k, values in logs.items()}
                if objective.better_than(objective.get_value(epoch),
                                         objective.get_value(current)):
                    best = i
            row = {k: float(values[best]) for k, values in logs.items()}
            epochs = list(getattr(history, "epoch", range(n)))
            row["best_epoch"] = float(epochs[best] + 1 if epochs else best + 1)
            row["epochs"] = float(epochs[-1] + 1 if epochs else n)
            rows.append(row)
        metrics = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
        metrics["seconds"] = float(seconds)
        return metrics

    def pre_create_trial(self):
        if self._worker_side is not None:
            self._worker_side.wait_if_idle()  # told to wait: not at once again
        super().pre_create_trial()

    def on_trial_begin(self, trial):
        self.memory.begin()
        if self._worker_side is not None:
            self._worker_side.trial_ids.append(trial.trial_id)
        super().on_trial_begin(trial)
        if distributed.current_role() == "worker":
            total = expected_trials(self.oracle)
            print(progress.worker_line(self.tuner_id, trial, total), file=self.stream,
                  flush=True)

    def on_trial_end(self, trial):
        if self._worker_side is not None and trial.trial_id in self._worker_side.trial_ids:
            self._worker_side.trial_ids.remove(trial.trial_id)
        super().on_trial_end(trial)
        self.trials_run.append(trial.trial_id)
        # The trained model is garbage now; free it, and what TensorFlow keeps
        # of it, before the next one.
        self.memory.end()
        if distributed.current_role() == "worker":
            result = (f"{self.oracle.objective.name}={self._score(trial)}"
                      if trial.status == "COMPLETED"
                      else f"{trial.status}: {progress.failure_reason(trial.message)}")
            print(f"{self.tuner_id} finished trial {progress.trial_number(trial.trial_id)}: "
                  f"{result}", file=self.stream, flush=True)
        if trial.status in ("FAILED", "INVALID"):
            self.consecutive_failures += 1
        else:
            self.consecutive_failures = 0
        limit = self.max_consecutive_failures
        if limit and self.consecutive_failures >= limit:
            raise SearchFailedError(
                f"{self.consecutive_failures} trials failed in a row; the last one with "
                f"{progress.failure_reason(trial.message)}. The search's state is saved: fix "
                f"the cause and run the same command again to resume.")

    def _score(self, trial):
        value = self.reported.get(trial.trial_id, {}).get(self.oracle.objective.name)
        return "?" if value is None else f"{value:.4f}"

    def build_trial(self, hp, build):
        # Every trial's model is built here (`compat.BuildHook`).
        keras.config.set_dtype_policy(self.dtype_policy)
        # Hyperband continues a trial from another's checkpoint, which holds
        # Adam's slots that a fresh model does not have yet: Keras warns.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer")
            return build(hp)

    def load_model(self, trial):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer")
            return super().load_model(trial)

    # -- state and the distributed chief ---------------------------------------------

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        state.write_tuner_state(compat.tuner_file(self), self.get_state())

    def search(self, *fit_args, **fit_kwargs):
        role = distributed.current_role()
        if role == "chief":
            self.save()
            distributed.serve(self.oracle, stream=self.stream,
                              worker_timeout=self.worker_timeout)
            return
        if role != "worker":
            self.search_trials(*fit_args, **fit_kwargs)
            return
        import grpc

        distributed.worker_wait()
        total = expected_trials(self.oracle)
        if total and state.ended_trials(self.project_dir) >= total \
                and not distributed.chief_answers(self.oracle):
            print(f"{self.tuner_id}: the search in {os.path.dirname(self.project_dir)} is over "
                  f"(all {total} trials ended) and its chief has gone; nothing to run.",
                  file=self.stream, flush=True)
            return
        try:
            if self.before_trials is not None:
                self.oracle.get_space()  # waits for the chief, as asking for a trial would
                self.before_trials()
            with distributed.WorkerSide(self.oracle) as self._worker_side:
                self.search_trials(*fit_args, **fit_kwargs)
        except grpc.RpcError as error:
            address = (f"{os.environ.get('KERASTUNER_ORACLE_IP')}:"
                       f"{os.environ.get('KERASTUNER_ORACLE_PORT')}")
            raise SearchFailedError(
                f"{self.tuner_id}: the chief at {address} did not answer "
                f"({error.code().name}); start it (or check the address) and start this "
                f"worker again with the same ID to resume its trial.") from None

    def search_trials(self, *fit_args, **fit_kwargs):
        """The loop that takes trials from the oracle and runs them (Keras Tuner's)."""
        super().search(*fit_args, **fit_kwargs)


@functools.lru_cache(maxsize=None)
def zoo_tuner_class(base):
    """`base` (a Keras Tuner tuner class) with `ReuseMixin` and `ZooTunerMixin` mixed in."""
    return type(f"Zoo{base.__name__}", (reuse.ReuseMixin, ZooTunerMixin, base), {})


def expected_trials(oracle):
    """How many trials the search will run (`None` when unknown)."""
    max_trials = getattr(oracle, "max_trials", None)
    if max_trials:
        return int(max_trials)
    inner = getattr(oracle, "_oracle", oracle)  # a worker's client wraps the oracle
    if isinstance(inner, kt.oracles.HyperbandOracle):
        iterations = inner.hyperband_iterations
        if not math.isfinite(iterations):
            return None
        return int(compat.hyperband_trials_per_iteration(inner) * iterations)
    return None


def make_oracle(kind, *, objective="val_accuracy", max_trials=10, epochs=10, seed=0):
    """The oracle of a `kind` of search, its state files written atomically."""
    v.check_choice("tuner", kind, TUNERS)
    oracle_cls = state.oracle_class(TUNERS[kind][1])
    # Retrying a failed trial repeats the same failure (a NaN loss, a bad
    # configuration); the tuner stops after repeated failures itself.
    common = dict(objective=objective, seed=int(seed) + 1, max_retries_per_trial=0,
                  max_consecutive_failed_trials=None)
    if kind == "hyperband":
        return oracle_cls(max_epochs=epochs, factor=3, hyperband_iterations=1, **common)
    if kind == "bayesian":
        return oracle_cls(max_trials=max_trials, num_initial_points=max(2, max_trials // 2),
                          **common)
    return oracle_cls(max_trials=max_trials, **common)


def make_tuner(kind, hypermodel, *, directory, objective="val_accuracy", max_trials=10,
               epochs=10, seed=0, overwrite=False, distribution_strategy=None,
               max_consecutive_failures=3, tuner_class=None, stream=None, quiet=False,
               dtype_policy=None):
    """Builds the tuner of a search (resuming from `directory` when it holds one).

    Args:
        kind: `"random"`, `"bayesian"` or `"hyperband"`.
        hypermodel: a `keras_tuner.HyperModel` (usually a `ZooHyperModel`).
        directory: where Keras Tuner's state goes (`<directory>/keras_tuner`).
        objective: the metric to optimize; `val_*` metrics need validation data.
        max_trials: trials of a random or Bayesian search (Hyperband sizes
            itself from `epochs`).
        epochs: Hyperband's largest number of epochs.
        seed: the oracle's and the trials' seed.
        overwrite: start afresh instead of resuming.
        distribution_strategy: a `tf.distribute` strategy (TensorFlow only).
        max_consecutive_failures: see `ZooTunerMixin`.
        tuner_class: the tuner class to build. Defaults to
            `zoo_tuner_class(TUNERS[kind][0])`; another class must accept the
            same arguments (subclass `ZooTunerMixin`).
        stream: where progress goes. Defaults to `sys.stdout`.
        quiet: print no per-trial progress.
        dtype_policy: the policy every trial is built under (see
            `ZooTunerMixin`). Defaults to the global policy now.
    """
    oracle = make_oracle(kind, objective=objective, max_trials=max_trials, epochs=epochs,
                         seed=seed)
    display = progress.Progress(oracle, total=expected_trials(oracle), stream=stream)
    display.enabled = not quiet
    compat.set_display(oracle, display)
    cls = tuner_class or zoo_tuner_class(TUNERS[kind][0])
    return cls(oracle, hypermodel, seed=seed, directory=os.fspath(directory),
               project_name=PROJECT_NAME, overwrite=overwrite,
               distribution_strategy=distribution_strategy,
               max_consecutive_failures=max_consecutive_failures, stream=stream,
               dtype_policy=dtype_policy)
