"""Keras Tuner's state on disk, made safe against a kill at any moment.

Keras Tuner 1.4.8 writes `oracle.json`, each `trial_*/trial.json` and the
tuner's `<id>.json` by opening the file and writing into it: a kill during
the write leaves a truncated JSON file and the next run cannot reload. It
also writes a trial's file and the oracle's file one after the other, so a
kill between the two leaves them disagreeing (a trial that exists on disk
but that the oracle never hands out again, or a finished trial queued to run
again). `AtomicOracleMixin` writes every file with `cnnzoo._atomic` and
reconciles the two on reload; `oracle_class(base)` mixes it into any Keras
Tuner oracle class.
"""

import contextlib
import functools
import json
import os

import keras_tuner as kt

from cnnzoo import _atomic
from cnnzoo import _validation as v
from tuning import _compat_keras_tuner as compat

LOCK_FILE = ".cnnzoo-search.lock"
PID_FILE = ".cnnzoo-search.pid"

RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
FINAL = (COMPLETED, FAILED)


class AtomicOracleMixin(compat.SaveTrialHook):
    """Atomic state files and a reconciling reload, for any `keras_tuner.Oracle`.

    Also takes the failure limit out of `end_trial`: Keras Tuner raises there
    *before* saving the trial that hit the limit, which leaves the state on
    disk behind; the tuner counts consecutive failures after saving instead
    (see `tuning.tuners.ZooTunerMixin`).
    """

    def save(self):
        _atomic.write_json(compat.oracle_file(self), self.get_state(), indent=None)

    def write_trial(self, trial):
        # Keras Tuner's `_save_trial` (`compat.SaveTrialHook`), atomic.
        _atomic.write_json(compat.trial_file(self, trial.trial_id), trial.get_state(),
                           indent=None)

    def reload(self):
        super().reload()
        self.reconcile()

    def reconcile(self):
        """Makes the oracle's state agree with the trials' own files.

        A trial whose file says it finished is never run again; a trial that
        did not finish and is not queued (the run was killed between writing
        the trial's file and the oracle's) is queued to run again, keeping its
        ID, so the total number of trials comes out right.
        """
        ended = set(self.end_order)
        queue = compat.retry_queue(self)
        for trial_id in sorted(self.trials):
            trial = self.trials[trial_id]
            if trial.status in FINAL:
                while trial_id in queue:
                    queue.remove(trial_id)
                if trial_id not in ended:
                    self.end_order.append(trial_id)
            elif trial_id not in queue:
                if trial_id not in self.start_order:
                    self.start_order.append(trial_id)
                self._record_values(trial)
                # `create_trial` pops from the end: the oldest runs first.
                queue.insert(0, trial_id)

    @kt.synchronized
    def end_trial(self, trial):
        # A chief restarted while a worker kept training queued that worker's
        # trial to run again; its result arriving settles it.
        queue = compat.retry_queue(self)
        while trial.trial_id in queue:
            queue.remove(trial.trial_id)
        super().end_trial(trial)

    def interrupted_trials(self):
        """IDs of trials queued to run again after an interruption."""
        return list(compat.retry_queue(self))


@functools.lru_cache(maxsize=None)
def oracle_class(base):
    """`base` (a Keras Tuner oracle class) with `AtomicOracleMixin` mixed in."""
    return type(f"Atomic{base.__name__}", (AtomicOracleMixin, base), {})


def write_tuner_state(path, state):
    """Writes a tuner's `<id>.json` atomically."""
    _atomic.write_json(path, state, indent=None)


def ended_trials(project_dir):
    """How many trials in `project_dir` have ended, by their own `trial.json`.

    Counts every status but `RUNNING` and `IDLE` (a trial file that cannot be
    read counts as not ended). Zero when the folder holds no search.
    """
    ended = 0
    if not os.path.isdir(project_dir):
        return ended
    for name in os.listdir(project_dir):
        path = os.path.join(project_dir, name, "trial.json")
        if not name.startswith("trial_") or not os.path.exists(path):
            continue
        try:
            with open(path) as f:
                status = json.load(f).get("status")
        except (OSError, ValueError):
            continue
        ended += status not in (RUNNING, "IDLE", None)
    return ended


def has_saved_state(project_dir):
    """True when `project_dir` holds an oracle state to resume from."""
    return os.path.exists(os.path.join(project_dir, "oracle.json"))


@contextlib.contextmanager
def search_lock(out):
    """Holds `<out>/.cnnzoo-search.lock` while a search runs in `out`.

    A second search of the same folder (not a worker of it) is refused
    while the first runs: both would run the same trials and write the same
    files. The lock is the `filelock` package's (the operating system's file
    lock, on Windows too), which the system releases when the process ends,
    however it ends, so a killed search never leaves the folder locked. The
    holder's process ID is kept beside it (`.cnnzoo-search.pid`), for the
    message.
    """
    import filelock

    os.makedirs(out, exist_ok=True)
    lock = filelock.FileLock(os.path.join(out, LOCK_FILE), timeout=0)
    pid_file = os.path.join(out, PID_FILE)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            with open(pid_file) as f:
                holder = f.read(32).strip()
        except OSError:
            holder = ""
        v.fail(f"Another search is running in {out}" + (f" (process {holder})" if holder
                                                          else "")
               + ": wait for it to end, or choose another --out.", "out", out)
    try:
        _atomic.write_text(pid_file, str(os.getpid()))
        yield
    finally:
        lock.release()
