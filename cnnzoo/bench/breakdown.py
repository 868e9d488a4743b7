"""Where a search's wall time goes: exclusive time per part, from timed functions.

`timed_parts()` wraps, for as long as it is active, the functions that do
each part of a search (Keras's compiled training and test functions, model
building, the reuse's assignments, checkpoints, Keras Tuner's oracle and
tuner hooks, clearing the session) and charges each call's time, less the
time of the timed calls inside it, to its part. What no timed function
covers (the search's set-up and report, Keras's loop between calls) is what
is left of the wall time. A compiled function's first call traces it and
runs one call's steps; its tracing is counted as that call's time less a
typical later call's (the median), the rest as steps.

The wrappers cost microseconds a call, a few hundred calls a search.
"""

import contextlib
import functools
import statistics
import time

# Parts, in the order a breakdown lists them.
PARTS = (
    "tracing the training step",
    "training steps",
    "tracing the validation step",
    "validation steps",
    "Keras's fit and evaluate loops (data, callbacks, logs)",
    "building models",
    "assigning a kept model's variables",
    "building the optimizer and metrics before the first step",
    "best-epoch weights copied in memory",
    "checkpoint files written",
    "Keras Tuner's bookkeeping (oracle, trial and tuner state)",
    "clearing the session between models",
)
_MISSING = object()


class Timeline:
    """Exclusive times of nested timed calls, per part."""

    def __init__(self):
        self.seconds = dict.fromkeys(PARTS, 0.0)
        # Calls of the timed functions per part (the outermost ones of a part).
        self.counts = dict.fromkeys(PARTS, 0)
        # Compiled functions: part -> [(first call?, seconds)].
        self.calls = {}
        self._stack = []
        self._parts_open = []

    @contextlib.contextmanager
    def _frame(self, record):
        """Times the block; `record(exclusive seconds)`, its time charged to the caller's frame."""
        frame = [time.perf_counter(), 0.0]  # start, time of the timed calls inside
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = time.perf_counter() - frame[0]
            record(elapsed - frame[1])
            if self._stack:
                self._stack[-1][1] += elapsed

    def wrap(self, part, fn):
        """`fn`, charging its exclusive time to `part`."""

        def record(seconds, outermost):
            self.seconds[part] = self.seconds.get(part, 0.0) + seconds
            self.counts[part] = self.counts.get(part, 0) + outermost

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            outermost = part not in self._parts_open
            self._parts_open.append(part)
            try:
                with self._frame(lambda seconds: record(seconds, outermost)):
                    return fn(*args, **kwargs)
            finally:
                self._parts_open.pop()

        return timed

    def wrap_compiled(self, part, fn):
        """A compiled function `fn`: its calls recorded one by one, the first marked."""
        first = [True]  # this function's first call traces it

        def record(seconds):
            self.calls.setdefault(part, []).append((first[0], seconds))
            first[0] = False

        def timed(*args, **kwargs):
            with self._frame(record):
                return fn(*args, **kwargs)

        timed.cnnzoo_timed = True
        return timed

    def breakdown(self, total):
        """`{part: seconds}` of a search of `total` seconds, with what is left as `"other"`.

        A part's calls (the outermost timed calls; a compiled function's
        calls) are in `counts` after this.
        """
        parts = dict(self.seconds)
        for kind, (trace, steps) in {"training": ("tracing the training step",
                                                  "training steps"),
                                     "validation": ("tracing the validation step",
                                                    "validation steps")}.items():
            calls = self.calls.get(kind, [])
            later = [s for first, s in calls if not first]
            typical = statistics.median(later) if later else 0.0
            firsts = [s for first, s in calls if first]
            parts[trace] += sum(max(s - typical, 0.0) for s in firsts)
            parts[steps] += sum(later) + sum(min(s, typical) for s in firsts)
            self.counts[trace] = len(firsts)
            self.counts[steps] = len(calls)
        parts["other (set-up, report, Python between calls)"] = max(
            total - sum(parts.values()), 0.0)
        return parts


@contextlib.contextmanager
def _patched(owner, name, make):
    """`owner.name` replaced by `make(original)` inside the block."""
    had = vars(owner).get(name, _MISSING) if isinstance(owner, type) else _MISSING
    original = getattr(owner, name)
    setattr(owner, name, make(original))
    try:
        yield
    finally:
        if had is _MISSING and isinstance(owner, type):
            delattr(owner, name)
        else:
            setattr(owner, name, original if had is _MISSING else had)


@contextlib.contextmanager
def timed_parts(extra=()):
    """Times the parts of searches run inside the block; yields the `Timeline`.

    Args:
        extra: more `(owner, attribute, part)` to time (the benchmark's own
            `build(hp)`).
    """
    import keras
    import keras_tuner as kt

    from tuning import memory, reuse, tuners
    from tuning.hypermodel import ZooHyperModel

    line = Timeline()

    def compiled(kind, maker):
        def make(self, *args, **kwargs):
            result = maker(self, *args, **kwargs)
            attr = f"{kind}_function"
            # Keras's sets the attribute (and returns it only when it was set).
            fn = getattr(self, attr, None)
            if fn is not None and not getattr(fn, "cnnzoo_timed", False):
                fn = line.wrap_compiled("training" if kind == "train" else "validation", fn)
                setattr(self, attr, fn)
            return result if result is None else fn

        return make

    plain = [
        (keras.Model, "fit", "Keras's fit and evaluate loops (data, callbacks, logs)"),
        (keras.Model, "evaluate", "Keras's fit and evaluate loops (data, callbacks, logs)"),
        (ZooHyperModel, "build", "building models"),
        (reuse, "reset_from", "assigning a kept model's variables"),
        (reuse, "prepare_training", "building the optimizer and metrics before the first step"),
        (reuse.BestEpochCheckpoint, "on_epoch_end", "best-epoch weights copied in memory"),
        (reuse.BestEpochCheckpoint, "on_train_end", "best-epoch weights copied in memory"),
        (keras.Model, "save_weights", "checkpoint files written"),
        (memory.TrialMemory, "end", "clearing the session between models"),
        (keras.backend, "clear_session", "clearing the session between models"),
    ]
    bookkeeping = "Keras Tuner's bookkeeping (oracle, trial and tuner state)"
    for name in ("create_trial", "update_trial", "end_trial", "save"):
        plain.append((kt.Oracle, name, bookkeeping))
    for name in ("on_trial_begin", "on_trial_end", "save"):
        plain.append((kt.Tuner, name, bookkeeping))
    for name in ("on_trial_begin", "on_trial_end", "save"):
        plain.append((tuners.ZooTunerMixin, name, bookkeeping))
    plain.append((reuse.ReuseMixin, "on_trial_end", bookkeeping))
    plain.extend(extra)
    with contextlib.ExitStack() as stack:
        for owner, name, part in plain:
            stack.enter_context(_patched(owner, name, functools.partial(line.wrap, part)))
        for kind in ("train", "test"):
            stack.enter_context(_patched(keras.Model, f"make_{kind}_function",
                                         functools.partial(compiled, kind)))
        yield line


def summary(parts, total, counts=None):
    """`"training steps 20.1 s (45%, 12 calls), ..."`: the parts of `total` s, largest first."""
    counts = counts or {}
    ranked = sorted(((s, p) for p, s in parts.items() if s >= 0.05), reverse=True)
    return ", ".join(f"{p} {s:.1f} s ({100 * s / total:.0f}%"
                     + (f", {counts[p]:g} calls" if counts.get(p) else "") + ")"
                     for s, p in ranked)
