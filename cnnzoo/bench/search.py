"""Trials per hour of the default dropout search against Keras Tuner driven the plain way.

Contenders, interleaved, on the same data splits, search space and budget
(`max_trials` trials of `epochs` epochs each):

- `plain Keras Tuner`: `keras_tuner.RandomSearch` over a `build(hp)`
  function that writes `simple_cnn` by hand with the same three
  hyperparameters (`dropout_rate` 0-0.7 step 0.1, `block_dropout_rate` 0-0.5
  step 0.1, `dropout_type` standard/spatial), Keras defaults everywhere
  (float32, batch size 32, arrays straight into `fit`);
- `cnnzoo default`: `tuning.search` with its defaults (what `cnnzoo tune`
  runs), without the export of the best model: one compiled model serves
  every trial (`tuning.packed`), so only the first trial traces, and
  `pack="auto"` picks how many trials train side by side in it
  (`tuning.packed.auto_pack`: on 2 CPU cores, with one intra-op thread, 2
  for the full budget and 1 for the quick one; on a GPU, 1 for searches
  shorter than `tuning.packed.AUTO_PACK_MIN_STEPS`);
- `cnnzoo --pack K` (at the full budget, or when asked): the same with
  `pack=K`; at the full budget K is 1, one trial at a time, which shows
  what the default's packing adds.

On TensorFlow each contender's search runs in a fresh process of its own,
after an untimed one-trial warm-up there, as a user's run would: cnnzoo
sets TensorFlow's threads before TensorFlow starts (`cnnzoo.runtime`,
`threads="auto"`), which a process that has already trained something can
no longer do, and no contender's tracing is slowed by what the ones before
it left in the process. Trials per hour is `max_trials / wall time` of the
whole search (set-up and report included; the process's start and
warm-up are not). The ratio is computed per interleaved repeat; each
repeat uses its own seed (the same for every contender), so the best
validation accuracies form a sample too. The best objective counts as
reached when cnnzoo's is no worse than plain Keras Tuner's by more than two
binomial standard errors of one validation accuracy: the target guards
against speed bought with worse results. A better result is not a miss; the
note says when it is beyond noise (cnnzoo's models use He initialization
where the plain build keeps Keras's Glorot default, which tells after one
epoch).
"""

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

from cnnzoo import _validation as v
from cnnzoo.bench import harness

NAME = "search"
QUICK = {"max_trials": 3, "epochs": 1, "repeats": 2}
FULL = {"max_trials": 10, "epochs": 10, "repeats": 3}
PACK = 1


def plain_build(input_shape, num_classes):
    """The plain user's `build(hp)`: simple_cnn by hand, Keras defaults."""
    import keras
    from keras import layers

    def build(hp):
        rate = hp.Float("dropout_rate", 0.0, 0.7, step=0.1, default=0.5)
        block = hp.Float("block_dropout_rate", 0.0, 0.5, step=0.1, default=0.0)
        kind = hp.Choice("dropout_type", ["standard", "spatial"])
        block_layer = layers.SpatialDropout2D if kind == "spatial" else layers.Dropout
        model = keras.Sequential([keras.Input(shape=input_shape), layers.Rescaling(1 / 255)])
        for filters in (32, 64):
            model.add(layers.Conv2D(filters, 3, padding="same", activation="relu"))
            if block > 0:
                model.add(block_layer(block))
            model.add(layers.MaxPooling2D(2))
        model.add(layers.Flatten())
        model.add(layers.Dense(128, activation="relu"))
        if rate > 0:
            model.add(layers.Dropout(rate))
        model.add(layers.Dense(num_classes, activation="softmax"))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    return build


class _Searches:
    """Runs each contender once per call, recording the best objective."""

    def __init__(self, ds, data, max_trials, epochs, workdir):
        self.ds = ds
        self.data = data
        self.max_trials = max_trials
        self.epochs = epochs
        self.workdir = workdir
        self.seed = 0
        self.best = {}
        self.packs = {}
        self.count = 0

    def warm_up(self, *searches):
        """One untimed one-trial, one-epoch search per contender (default: both).

        What a process pays once (imports such as matplotlib for the report,
        TensorFlow's first tracing and tf.data set-up, Keras Tuner's) is not
        a cost per search; it is paid here, outside the timed repeats.
        """
        budget, self.max_trials, self.epochs = (self.max_trials, self.epochs), 1, 1
        best, self.best = self.best, {}  # not recorded
        try:
            for search in searches or (self.plain, self.zoo):
                search()
        finally:
            (self.max_trials, self.epochs), self.best = budget, best

    def _folder(self, name):
        self.count += 1
        return os.path.join(self.workdir, f"{name}-{self.count}")

    def plain(self):
        import keras
        import keras_tuner as kt

        keras.config.set_dtype_policy("float32")  # Keras's default, whatever ran before
        ds = self.ds
        tuner = kt.RandomSearch(plain_build(ds.input_shape, ds.num_classes),
                                objective="val_accuracy", max_trials=self.max_trials,
                                seed=self.seed + 1, directory=self._folder("plain"),
                                overwrite=True)
        with contextlib.redirect_stdout(io.StringIO()):
            tuner.search(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val),
                         epochs=self.epochs, verbose=0)
        best = tuner.oracle.get_best_trials(1)[0].score
        self.best.setdefault("plain Keras Tuner", []).append(float(best))
        keras.backend.clear_session()

    def zoo(self, pack=None):
        import keras

        import tuning

        name = "cnnzoo default" if pack is None else f"cnnzoo --pack {pack}"
        kwargs = {} if pack is None else {"pack": pack}
        result = tuning.search("simple_cnn", self.data, max_trials=self.max_trials,
                               epochs=self.epochs, seed=self.seed, out=self._folder("zoo"),
                               export=False, quiet=True, **kwargs)
        self.best.setdefault(name, []).append(float(result.best["score"]))
        self.packs[name] = int(max(t.get("pack_size") or 1 for t in result.trials))
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()


class _FreshSearches(_Searches):
    """Runs each contender in a fresh process (`child`), recording its time and best.

    `clock` is the harness's clock: it advances by the searches' own wall
    times, as the children measure them.
    """

    def __init__(self, data, max_trials, epochs, workdir):
        super().__init__(None, data, max_trials, epochs, workdir)
        self.elapsed = 0.0
        self.threads = {}

    def clock(self):
        return self.elapsed

    def run(self, name, pack=None):
        from cnnzoo import _native_log

        kind = "plain" if name == "plain Keras Tuner" else "zoo"
        # A folder of its own: a search in a used one would resume.
        spec = {"kind": kind, "data": self.data, "max_trials": self.max_trials,
                "epochs": self.epochs, "seed": self.seed, "pack": pack,
                "out": self._folder(kind)}
        result = subprocess.run([sys.executable, "-m", "cnnzoo.bench.search", json.dumps(spec)],
                                capture_output=True, text=True, check=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            said = [line for line in result.stderr.splitlines()
                    if line.strip() and not any(n in line for n in _native_log.NOTICES)]
            raise RuntimeError(f"the {name} search failed in its process: "
                               f"{' | '.join(said[-3:])}")
        found = json.loads(lines[-1])
        self.elapsed += found["seconds"]
        self.best.setdefault(name, []).append(found["best"])
        self.threads[name] = found["threads"]
        if found.get("pack"):
            self.packs[name] = found["pack"]


def child(spec):
    """One contender's search in this (fresh) process: an untimed warm-up, then the search.

    Returns:
        A dict: `seconds` (the timed search's wall time), `best` (its best
        validation accuracy), `threads` (TensorFlow's intra-op threads, 0 for
        its default) and, for cnnzoo, `pack` (the trials trained per model).
    """
    import cnnzoo.data

    ds = cnnzoo.data.load_dataset(spec["data"], seed=0)
    searches = _Searches(ds, spec["data"], spec["max_trials"], spec["epochs"], spec["out"])
    searches.seed = spec["seed"]
    if spec["kind"] == "plain":
        search = searches.plain
    else:
        def search():
            searches.zoo(spec["pack"])
    searches.warm_up(search)
    start = time.perf_counter()
    search()
    seconds = time.perf_counter() - start
    threads = 0
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        threads = tf.config.threading.get_intra_op_parallelism_threads()
    (best,) = searches.best.values()
    found = {"seconds": seconds, "best": best[0], "threads": threads}
    if searches.packs:
        (found["pack"],) = searches.packs.values()
    return found


def _packing(name, k):
    if not k:
        return ""
    return f"; {name}: " + ("one trial at a time" if k == 1 else f"{k} trials packed per model")


def best_reached(best, base, n_val, name="cnnzoo"):
    """Whether contender `name`'s best validation accuracy reaches the plain search's.

    Reached: no worse by more than two binomial standard errors of one
    validation accuracy (`n_val` images) at the plain search's level.

    Returns:
        `(reached, note)`.
    """
    se = math.sqrt(max(base * (1 - base), 1e-12) / n_val)
    diff = best - base
    beyond = "; better beyond noise" if diff > 2 * se else ""
    return diff >= -2 * se, (f"plain {base:.4f}, {name} {best:.4f}, difference {diff:+.4f} "
                             f"(one binomial SE = {se:.4f}; reached = no worse than -2 SE"
                             f"{beyond})")


def run(quick=True, repeats=None, max_trials=None, epochs=None, pack=None, data="digits",
        target=2.0, where="2 CPU cores", fresh=None):
    """Returns the result rows.

    Args:
        quick: the `QUICK` budget, else `FULL`.
        repeats, max_trials, epochs: override the budget.
        pack: K of the `cnnzoo --pack K` contender. Defaults to `PACK` (one
            trial at a time, against the default's choice) at the full
            budget and to none at the quick one (whose search is too short
            to pack; leaving it out keeps `cnnzoo bench --quick` within five
            minutes).
        data: the dataset both searches use (`"digits"` needs scikit-learn;
            `"shapes"` is drawn with numpy).
        target, where: the trials-per-hour target and the hardware it is
            for (the issue: 2x on 2 CPU cores, 5x on a GPU).
        fresh: run each search in a fresh process (`child`). Defaults to
            `True` on TensorFlow (whose threads cnnzoo sets before it
            starts) and `False` elsewhere.
    """
    try:
        import tuning
        import tuning.driver  # noqa: F401
    except ImportError as error:
        return [harness.unavailable(NAME, f"the `tuning` package does not import ({error})")]
    import cnnzoo.data

    settings = dict(QUICK if quick else FULL)
    settings["repeats"] = repeats or settings["repeats"]
    settings["max_trials"] = max_trials or settings["max_trials"]
    settings["epochs"] = epochs or settings["epochs"]
    if pack is None and not quick:
        pack = PACK
    import keras

    if fresh is None:
        fresh = keras.backend.backend() == "tensorflow"
    workdir = tempfile.mkdtemp(prefix="cnnzoo-bench-search-")
    try:
        ds = cnnzoo.data.load_dataset(data, seed=0)
        if fresh:
            searches = _FreshSearches(data, settings["max_trials"], settings["epochs"], workdir)
            fns = {"plain Keras Tuner": lambda: searches.run("plain Keras Tuner"),
                   "cnnzoo default": lambda: searches.run("cnnzoo default")}
            if pack is not None:
                fns[f"cnnzoo --pack {pack}"] = lambda: searches.run(f"cnnzoo --pack {pack}",
                                                                    pack)
            clock = searches.clock
        else:
            searches = _Searches(ds, data, settings["max_trials"], settings["epochs"], workdir)
            searches.warm_up()
            fns = {"plain Keras Tuner": searches.plain, "cnnzoo default": searches.zoo}
            if pack is not None:
                fns[f"cnnzoo --pack {pack}"] = lambda: searches.zoo(pack)
            clock = time.perf_counter
        # Each repeat gets its own seed: contenders of one repeat share it.
        order = list(fns)
        timed = {}
        for name in order:
            def call(fn=fns[name], name=name):
                fn()
                if name == order[-1]:
                    searches.seed += 1
            timed[name] = call
        times = harness.interleave(timed, repeats=settings["repeats"], warmup=0, clock=clock)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    n_val = len(ds.x_val)
    trials = settings["max_trials"]
    rows = []
    base_best = harness.summarize(searches.best["plain Keras Tuner"])
    budget = (f"{trials} trials x {settings['epochs']} epochs, simple_cnn on {data} "
              f"({len(ds.x_train)} train / {n_val} validation)")
    for name in order[1:]:
        ratio = harness.speedup(times, "plain Keras Tuner", name)
        best = harness.summarize(searches.best[name])
        reached, note = best_reached(best.median, base_best.median, n_val, name)
        per_hour = {k: 3600 * trials / harness.summarize(t).median for k, t in times.items()}
        rows.append(harness.row(
            NAME, f"trials/hour: {name} vs plain Keras Tuner", summary=ratio,
            target=f">= {target:g} ({where}), best objective reached within noise",
            met=harness.at_least(ratio, target) and reached,
            context=(f"{budget}; trials/hour: plain {per_hour['plain Keras Tuner']:.0f}, "
                     f"{name} {per_hour[name]:.0f}" + (
                         f"; each search in a fresh process (TensorFlow intra-op threads: "
                         f"plain {searches.threads['plain Keras Tuner'] or 'default'}, "
                         f"{name} {searches.threads[name] or 'default'})" if fresh else "")
                     + _packing(name, searches.packs.get(name))),
            note=f"best val_accuracy (median over repeats): {note}"))
    return rows


def break_even(short, long, *, max_trials, epochs, steps_per_epoch):
    """Fixed cost, cost per trial-epoch, and where packing pays, from two search lengths.

    A search's wall time is modelled as `fixed + per_epoch * trials * epochs`:
    `fixed` is what a search pays once (set-up, compiling its model's
    functions, the report), `per_epoch` what each trial-epoch adds. Two
    lengths give both, for one trial at a time and for K packed.

    Args:
        short, long: `{"one": seconds, "packed": seconds}` of the searches
            of `epochs[0]` and of `epochs[1]` epochs.
        max_trials: the searches' trials.
        epochs: `(short, long)` epochs per trial.
        steps_per_epoch: training steps per epoch.

    Returns:
        A dict: `fixed` and `per_epoch` (seconds, `{"one": ..., "packed":
        ...}`) and `trial_steps`, the search length (trials x epochs x
        steps per epoch) from which packing is faster, and stays faster
        (`math.inf` when it saves nothing per epoch; 0 when it also costs
        nothing more to start).
    """
    e1, e2 = epochs
    if not 0 < e1 < e2:
        v.fail("Expected two epoch counts, the first smaller.", "epochs", epochs)
    fixed, per_epoch = {}, {}
    for k in ("one", "packed"):
        per_epoch[k] = (long[k] - short[k]) / (max_trials * (e2 - e1))
        fixed[k] = short[k] - per_epoch[k] * max_trials * e1
    saved = per_epoch["one"] - per_epoch["packed"]
    extra = fixed["packed"] - fixed["one"]
    if saved <= 0:
        trial_steps = math.inf
    else:
        trial_steps = max(extra, 0.0) / saved * steps_per_epoch
    return {"fixed": fixed, "per_epoch": per_epoch, "trial_steps": trial_steps}


def packing(max_trials=16, epochs=(5, 20), pack=8, repeats=1, data="digits"):
    """Rows: what packing `pack` trials saves per trial-epoch, and where it breaks even.

    Four searches (one trial at a time and `pack` packed, each at two
    lengths) after an untimed warm-up, interleaved; `break_even` splits each
    contender's time into a fixed cost and a cost per trial-epoch. This is
    the measurement behind `tuning.packed.AUTO_PACK_MIN_STEPS` (run on a GPU
    by `benchmarks/gpu.py`).
    """
    import keras

    import cnnzoo.data
    import tuning
    import tuning.driver
    from tuning import packed

    workdir = tempfile.mkdtemp(prefix="cnnzoo-bench-packing-")
    count = [0]

    def search(k, n_epochs):
        count[0] += 1
        tuning.search("simple_cnn", data, max_trials=max_trials, epochs=n_epochs, seed=0,
                      out=os.path.join(workdir, str(count[0])), export=False, quiet=True,
                      pack=k)
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()

    fns = {(k, e): (lambda k=k, e=e: search(k, e)) for k in (1, pack) for e in epochs}
    try:
        search(1, 1)  # what a process pays once
        times = harness.interleave(fns, repeats=repeats, warmup=0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ds = cnnzoo.data.load_dataset(data, seed=0)
    steps = math.ceil(len(ds.x_train) / tuning.driver.DEFAULT_BATCH_SIZE)
    found = [break_even({"one": times[1, epochs[0]][r], "packed": times[pack, epochs[0]][r]},
                        {"one": times[1, epochs[1]][r], "packed": times[pack, epochs[1]][r]},
                        max_trials=max_trials, epochs=epochs, steps_per_epoch=steps)
             for r in range(repeats)]
    per_epoch = harness.summarize([f["per_epoch"]["one"] / f["per_epoch"]["packed"]
                                   for f in found])
    where = harness.summarize([f["trial_steps"] for f in found])

    def mean(key, k):
        return sum(f[key][k] for f in found) / len(found)

    budget = (f"simple_cnn on {data}, {max_trials} trials x {epochs[0]} and x {epochs[1]} "
              f"epochs of {steps} steps")
    costs = (f"fixed cost per search: one at a time {mean('fixed', 'one'):.1f} s, packed "
             f"{mean('fixed', 'packed'):.1f} s; per trial-epoch: "
             f"{mean('per_epoch', 'one') * 1e3:.0f} ms and "
             f"{mean('per_epoch', 'packed') * 1e3:.0f} ms")
    return [
        harness.row("packing", f"time per trial-epoch: --pack {pack} vs --pack 1",
                    summary=per_epoch,
                    context=f"{budget}; {costs}"),
        harness.row("packing", f"search length from which --pack {pack} is faster",
                    summary=where,
                    metric="trial-steps",
                    context=(f"{costs}; pack='auto' packs on an accelerator from "
                             f"{packed.AUTO_PACK_MIN_STEPS:,} trial-steps "
                             f"(`tuning.packed.AUTO_PACK_MIN_STEPS`)")),
    ]


if __name__ == "__main__":
    # `python -m cnnzoo.bench.search SPEC`: one search of `_FreshSearches`.
    print(json.dumps(child(json.loads(sys.argv[1]))), flush=True)
    sys.stderr.flush()
    # Everything is written: skip TensorFlow's and Keras Tuner's teardown
    # (about 1.5 s a process here, which no contender's time includes).
    os._exit(0)
