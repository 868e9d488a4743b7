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
  every trial (`tuning.reuse`), so only the first trial traces.

A named case (`CASES`: `resnet18`, ResNet-18 on `shapes` at 32x32, 4 trials
x 3 epochs) searches a zoo model instead: the plain `build(hp)` then calls
`cnnzoo.create_model` with the family's ranges (`plain_zoo_build`), and the
row's note says where each contender's search time went
(`cnnzoo.bench.breakdown`).

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
import statistics
import subprocess
import sys
import tempfile
import time

from cnnzoo.bench import harness

NAME = "search"
QUICK = {"max_trials": 3, "epochs": 1, "repeats": 2}
FULL = {"max_trials": 10, "epochs": 10, "repeats": 3}
# Named cases (`cnnzoo bench --only search --search-case NAME`): another model
# and data at a budget and target of their own, `repeats` in full mode (quick:
# 2), the plain contender's `build(hp)` calling `cnnzoo.create_model`
# (`plain_zoo_build`), and where each contender's time goes
# (`cnnzoo.bench.breakdown`) in the row.
CASES = {
    # A realistic model: ResNet-18 on shapes' 32x32 images, aiming at 3x (issue 22).
    "resnet18": {"model": "resnet18", "data": "shapes", "max_trials": 4, "epochs": 3,
                 "repeats": 3, "target": 3.0},
}


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


def plain_zoo_build(model, input_shape, num_classes):
    """The plain user's `build(hp)` over a zoo model: `cnnzoo.create_model`, Keras defaults.

    The searched rates span the family's ranges (`cnnzoo.model_info`), as
    cnnzoo's search does; the rest is Keras's defaults (float32, Adam at
    its default rate, arrays straight into `fit`).
    """
    import keras

    import cnnzoo

    space = cnnzoo.model_info(model)["search_space"]

    def build(hp):
        rates = {name: hp.Float(name, low, high, step=step)
                 for name, (low, high, step) in space.items()}
        kind = hp.Choice("dropout_type", ["standard", "spatial"])
        net = cnnzoo.create_model(model, input_shape=input_shape, num_classes=num_classes,
                                  dropout_type=kind, **rates)
        net.compile(optimizer=keras.optimizers.Adam(),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return net

    return build


class _Searches:
    """Runs each contender once per call, recording the best objective."""

    def __init__(self, ds, data, max_trials, epochs, workdir, model="simple_cnn"):
        self.ds = ds
        self.data = data
        self.model = model
        # The plain contender's `build(hp)` (a `cnnzoo.bench.breakdown` times it).
        self.build = None
        # name -> where each search's time went (`cnnzoo.bench.breakdown`), when timed.
        self.parts = {}
        self.max_trials = max_trials
        self.epochs = epochs
        self.workdir = workdir
        self.seed = 0
        self.best = {}
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
        if self.build is None:
            self.build = (plain_build(ds.input_shape, ds.num_classes)
                          if self.model == "simple_cnn"
                          else plain_zoo_build(self.model, ds.input_shape, ds.num_classes))
        tuner = kt.RandomSearch(self.build,
                                objective="val_accuracy", max_trials=self.max_trials,
                                seed=self.seed + 1, directory=self._folder("plain"),
                                overwrite=True)
        with contextlib.redirect_stdout(io.StringIO()):
            tuner.search(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val),
                         epochs=self.epochs, verbose=0)
        best = tuner.oracle.get_best_trials(1)[0].score
        self.best.setdefault("plain Keras Tuner", []).append(float(best))
        keras.backend.clear_session()

    def zoo(self):
        import keras

        import tuning

        result = tuning.search(self.model, self.data, max_trials=self.max_trials,
                               epochs=self.epochs, seed=self.seed, out=self._folder("zoo"),
                               export=False, quiet=True)
        self.best.setdefault("cnnzoo default", []).append(float(result.best["score"]))
        keras.config.set_dtype_policy("float32")
        keras.backend.clear_session()


class _FreshSearches(_Searches):
    """Runs each contender in a fresh process (`child`), recording its time and best.

    `clock` is the harness's clock: it advances by the searches' own wall
    times, as the children measure them.
    """

    def __init__(self, data, max_trials, epochs, workdir, model="simple_cnn", breakdown=False):
        super().__init__(None, data, max_trials, epochs, workdir, model)
        self.elapsed = 0.0
        self.threads = {}
        self.breakdown = breakdown

    def clock(self):
        return self.elapsed

    def run(self, name):
        from cnnzoo import _native_log

        kind = "plain" if name == "plain Keras Tuner" else "zoo"
        # A folder of its own: a search in a used one would resume.
        spec = {"kind": kind, "data": self.data, "max_trials": self.max_trials,
                "epochs": self.epochs, "seed": self.seed, "out": self._folder(kind),
                "model": self.model, "breakdown": self.breakdown}
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
        if "parts" in found:
            self.parts.setdefault(name, []).append((found["parts"], found["calls"]))


def child(spec):
    """One contender's search in this (fresh) process: an untimed warm-up, then the search.

    Returns:
        A dict: `seconds` (the timed search's wall time), `best` (its best
        validation accuracy) and `threads` (TensorFlow's intra-op threads, 0
        for its default); with `spec["breakdown"]`, also `parts`: where the
        timed search's time went (`cnnzoo.bench.breakdown`).
    """
    import cnnzoo.data

    ds = cnnzoo.data.load_dataset(spec["data"], seed=0)
    searches = _Searches(ds, spec["data"], spec["max_trials"], spec["epochs"], spec["out"],
                         spec.get("model", "simple_cnn"))
    searches.seed = spec["seed"]
    search = searches.plain if spec["kind"] == "plain" else searches.zoo
    searches.warm_up(search)
    timing = contextlib.nullcontext()
    if spec.get("breakdown"):
        from cnnzoo.bench import breakdown

        timing = breakdown.timed_parts()
    with timing as line:
        if line is not None and searches.build is not None:
            # The plain `build(hp)` (made by the warm-up) is the benchmark's own.
            searches.build = line.wrap("building models", searches.build)
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
    if line is not None:
        found["parts"] = line.breakdown(seconds)
        found["calls"] = line.counts
    return found


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


def check_case(case):
    """`case` if it names one of `CASES` (or is `None`: the default search), else a `ValueError`."""
    from cnnzoo import _validation as v

    return case if case is None else v.check_choice("search_case", case, list(CASES))


def run(quick=True, repeats=None, max_trials=None, epochs=None, data="digits",
        target=2.0, where="2 CPU cores", fresh=None, case=None):
    """Returns the result rows.

    Args:
        quick: the `QUICK` budget, else `FULL`.
        repeats, max_trials, epochs: override the budget.
        data: the dataset both searches use (`"digits"` needs scikit-learn;
            `"shapes"` is drawn with numpy).
        case: one of `CASES` instead of the default search (simple_cnn on
            `data`): its model, data, budget (`repeats`: in full mode) and
            target, and where each contender's time went. Only in fresh
            processes.
        target, where: the trials-per-hour target and the hardware it is
            for (the project's targets: 2x on 2 CPU cores, 5x on a GPU).
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

    model = "simple_cnn"
    settings = dict(QUICK if quick else FULL)
    if check_case(case) is not None:
        settings = dict(CASES[case])
        model, data = settings.pop("model"), settings.pop("data")
        target = settings.pop("target")
        settings["repeats"] = QUICK["repeats"] if quick else settings["repeats"]
    settings["repeats"] = repeats or settings["repeats"]
    settings["max_trials"] = max_trials or settings["max_trials"]
    settings["epochs"] = epochs or settings["epochs"]
    import keras

    if fresh is None:
        fresh = keras.backend.backend() == "tensorflow" or case is not None
    if case is not None and not fresh:
        from cnnzoo import _validation as v

        v.fail("Expected a named search case to run in fresh processes.", "fresh", fresh)
    workdir = tempfile.mkdtemp(prefix="cnnzoo-bench-search-")
    try:
        ds = cnnzoo.data.load_dataset(data, seed=0)
        if fresh:
            searches = _FreshSearches(data, settings["max_trials"], settings["epochs"], workdir,
                                      model, breakdown=case is not None)
            fns = {"plain Keras Tuner": lambda: searches.run("plain Keras Tuner"),
                   "cnnzoo default": lambda: searches.run("cnnzoo default")}
            clock = searches.clock
        else:
            searches = _Searches(ds, data, settings["max_trials"], settings["epochs"], workdir)
            searches.warm_up()
            fns = {"plain Keras Tuner": searches.plain, "cnnzoo default": searches.zoo}
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
    size = "x".join(map(str, ds.input_shape[:2]))
    budget = (f"{trials} trials x {settings['epochs']} epochs, {model} on {data} "
              + (f"at {size} " if case is not None else "")
              + f"({len(ds.x_train)} train / {n_val} validation)")
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
                         f"{name} {searches.threads[name] or 'default'})" if fresh else "")),
            note=f"best val_accuracy (median over repeats): {note}" + "".join(
                _parts_note(who, searches.parts[who])
                for who in ("plain Keras Tuner", name) if searches.parts.get(who))))
    return rows


def _parts_note(name, breakdowns):
    """`"; where plain Keras Tuner's time went (...)"`: medians of each part over the repeats."""
    from cnnzoo.bench import breakdown

    parts = {p: statistics.median(b[p] for b, _ in breakdowns) for p in breakdowns[0][0]}
    counts = {p: statistics.median(c.get(p, 0) for _, c in breakdowns) for p in parts}
    total = sum(parts.values())
    return (f"; where {name}'s search time went (median of {len(breakdowns)} searches, "
            f"{total:.1f} s): {breakdown.summary(parts, total, counts)}")


if __name__ == "__main__":
    # `python -m cnnzoo.bench.search SPEC`: one search of `_FreshSearches`.
    print(json.dumps(child(json.loads(sys.argv[1]))), flush=True)
    sys.stderr.flush()
    # Everything is written: skip TensorFlow's and Keras Tuner's teardown
    # (about 1.5 s a process here, which no contender's time includes).
    os._exit(0)
