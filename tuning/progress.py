"""Progress lines: trial n of N, its rates, how it ended, the best so far.

`Progress` replaces the oracle's own display (it has the same interface), so
the lines come from wherever the oracle runs: the only process of a local
search, or the chief of a distributed one. Workers print their own line per
trial (`worker_line`).
"""

import sys
import time

HIDDEN_PREFIX = "tuner/"


def trial_number(trial_id):
    """Keras Tuner's trial IDs are the zero-padded count of trials before them."""
    try:
        return int(trial_id) + 1
    except (TypeError, ValueError):
        return None


def format_values(values):
    """`dropout_rate=0.3 block_dropout_rate=0.1 dropout_type=spatial`."""
    parts = []
    for key, value in values.items():
        if key.startswith(HIDDEN_PREFIX):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{key}={value}")
    return " ".join(parts) or "defaults"


# A distributed chief gets no reason: Keras Tuner's gRPC trial carries none.
NO_REASON = "no reason recorded here (a distributed worker prints it in its log)"


def failure_reason(message):
    """The last line of a trial's traceback: `FailedTrialError: loss became nan ...`."""
    if not message:
        return None
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    # `package.module.FailedTrialError: ...` -> `FailedTrialError: ...`
    head, sep, rest = last.partition(":")
    return f"{head.rsplit('.', 1)[-1]}{sep}{rest}"


class Progress:
    """Prints one line when a trial starts and one when it ends.

    Args:
        oracle: the oracle whose trials are reported.
        total: the number of trials the search will run (`None` if unknown).
        stream: where to print. Defaults to `sys.stdout`.
    """

    def __init__(self, oracle, total=None, stream=None):
        self.oracle = oracle
        self.total = total
        self.stream = stream or sys.stdout
        # Keras Tuner sets `oracle.verbose` from `fit(verbose=...)`; that must
        # not silence the search's own progress.
        self.verbose = 1
        self.enabled = True
        self.started = {}

    # Keras Tuner saves and reloads the display's state with the oracle's.
    def get_state(self):
        return {"search_start": None, "trial_start": {}, "trial_number": {}}

    def set_state(self, state):
        pass

    def _print(self, text):
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def _label(self, trial):
        n = trial_number(trial.trial_id)
        if n is None:
            return f"Trial {trial.trial_id}"
        return f"Trial {n}/{self.total}" if self.total else f"Trial {n}"

    def on_trial_begin(self, trial):
        self.started[trial.trial_id] = time.perf_counter()
        values = trial.hyperparameters.values
        extra = ""
        epochs = values.get("tuner/epochs")
        if epochs is not None:
            extra = f" [epochs {values.get('tuner/initial_epoch', 0)}->{epochs}]"
        self._print(f"{self._label(trial)}: {format_values(values)}{extra}")

    def on_trial_end(self, trial):
        objective = self.oracle.objective.name
        start = self.started.pop(trial.trial_id, None)
        seconds = None
        if trial.metrics.exists("seconds"):
            seconds = trial.metrics.get_last_value("seconds")
        elif start is not None:
            seconds = time.perf_counter() - start
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        if trial.status == "COMPLETED":
            parts = [f"{objective}={trial.score:.4f}"]
            other = "val_loss" if objective != "val_loss" else "val_accuracy"
            if trial.metrics.exists(other):
                parts.append(f"{other}={trial.metrics.get_last_value(other):.4f}")
            result = " ".join(parts)
        else:
            result = f"{trial.status}: {failure_reason(trial.message) or NO_REASON}"
        best = self.oracle.get_best_trials(1)
        best_text = ""
        if best and best[0].status == "COMPLETED" and best[0].score is not None:
            n = trial_number(best[0].trial_id)
            best_text = f" | best so far {objective}={best[0].score:.4f} (trial {n})"
        self._print(f"{self._label(trial)} done{took}: {result}{best_text}")


def worker_line(tuner_id, trial, total=None):
    """`worker1 runs trial 3/10: dropout_rate=...`."""
    n = trial_number(trial.trial_id)
    label = f"{n}/{total}" if n and total else str(n or trial.trial_id)
    return f"{tuner_id} runs trial {label}: {format_values(trial.hyperparameters.values)}"
