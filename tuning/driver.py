"""`search(...)`: the dropout-rate search, start to finish (what `cnnzoo tune` runs).

1. Devices, precision and XLA are resolved once (`cnnzoo.runtime.configure`)
   and printed.
2. The data are loaded and checked, and the model is built once with the
   default hyperparameters on two real images: a mistake in set-up fails
   here, with one clear `ValueError`, not as failed trials.
3. Keras Tuner searches (`tuning.tuners`), resuming from `out` when it holds
   the same search; progress is printed per trial.
4. The trials are ranked (`tuning.report`): a table, `results.json`,
   `results.csv` and a plot of the objective against each rate.
5. The best trial's model is evaluated on the test split and exported
   (`cnnzoo.export.export_saved_model`) with a model card.

Everything is written under `out`; Keras Tuner's own state under
`out/keras_tuner`, TensorBoard's logs (on the TensorFlow backend) under
`out/logs`, one folder per trial with its HParams summaries.
"""

import contextlib
import dataclasses
import functools
import math
import os
import shlex
import sys
import time

from cnnzoo import _atomic, runtime
from cnnzoo import _validation as v
from tuning import config, memory
from tuning.config import SearchConfig

# The settings' names, defaults and checks: `tuning.config.SearchConfig`.
SETTINGS_FILE = config.SETTINGS_FILE
# TensorBoard's logs, one folder per trial (`_tensorboard`).
LOG_DIR = "logs"
# Settings that define a search: resuming with other values would mix two searches.
_IDENTITY = (*config.identity_fields(), "space")


@dataclasses.dataclass
class SearchResult:
    """What a search produced.

    Attributes:
        out: the folder everything was written to.
        role: `"local"`, `"chief"` or `"worker"`.
        trials: one dict per trial (see `tuning.report.collect`), ranked.
        best: the best trial's dict, or `None` when no trial completed.
        files: name -> path of `results.json`, `results.csv`, the plot,
            the exported model and TensorBoard's logs (what exists).
        test_metrics: the best model's metrics on the test split.
        resumed: whether the search continued an earlier one.
        seconds: wall time of this run.
    """

    out: str
    role: str
    trials: list
    best: dict
    files: dict
    test_metrics: dict
    resumed: bool
    seconds: float


def search(*args, **kwargs):
    """Searches the dropout rates of a zoo model on a dataset and exports the best model.

    Running it again with the same `out` resumes: finished trials are kept,
    an interrupted one runs again, and the total comes out right (raise
    `max_trials` to extend a finished search). The keywords are the fields
    of `tuning.config.SearchConfig` (every setting of a search, checked
    there once), and three objects (the last three below).

    Args:
{args}

    Returns:
        A `SearchResult`.

    Raises:
        ValueError: bad arguments, data or a model that cannot be built,
            before any trial runs.
        tuning.tuners.SearchFailedError: too many trials failed in a row.
    """
    bound = _SIGNATURE.bind(*args, **kwargs)  # a TypeError names an unknown keyword
    objects = {name: bound.arguments.pop(name, None) for name in config.OBJECTS}
    return run(SearchConfig(**bound.arguments), **objects)


_SIGNATURE = config.signature()
search.__signature__ = _SIGNATURE
search.__doc__ = search.__doc__.replace("{args}", config.args_doc())


def run(settings, *, hypermodel=None, tuner_class=None, stream=None):
    """Runs the search a `SearchConfig` describes (what `search` does once it has one).

    Args:
        settings: a `tuning.config.SearchConfig`.
        hypermodel, tuner_class, stream: see `search`.

    Returns:
        A `SearchResult`.
    """
    if not isinstance(settings, SearchConfig):
        v.fail("Expected a tuning.config.SearchConfig.", "settings", type(settings).__name__)
    _check_hypermodel(hypermodel)
    if hypermodel is not None and settings.weights is not None:
        v.fail("Expected `weights` with a zoo model only (a hypermodel of one's own loads "
               "its weights in its build).", "weights", settings.weights)
    if hypermodel is not None:
        from cnnzoo import recipe as recipes

        changed = [k for k, val in recipes.defaults().items() if getattr(settings, k) != val]
        if changed:
            v.fail("Expected the training recipe's settings with a zoo model only (a "
                   "hypermodel of one's own compiles its model in its build).", changed[0],
                   getattr(settings, changed[0]))
    stream = stream or sys.stdout
    # Imported here: `cnnzoo tune --help` must not pay for TensorFlow.
    from tuning import distributed

    if settings.workers is not None:
        if hypermodel is not None or tuner_class is not None:
            v.fail("Expected `workers` with a zoo model and a named tuner only (the worker "
                   "processes build them from the settings).", "workers", settings.workers)
        address = distributed.free_loopback_address()
        with distributed.local_workers(settings, settings.workers, address) as logs:
            if not settings.quiet:
                print(f"Started {settings.workers} local worker(s) for the chief on "
                      f"{address}; their output: {logs}", file=stream, flush=True)
            return run(dataclasses.replace(settings, workers=None, chief=address),
                       stream=stream)

    # `_search` takes the folder's lock into `held` once its checks pass.
    with distributed.environment(settings.chief, settings.worker) as role, \
            contextlib.ExitStack() as held:
        if role == "chief":
            distributed.check_timeout_against_heartbeat(settings.worker_timeout)
        return _search(settings, hypermodel=hypermodel, tuner_class=tuner_class,
                       stream=stream, role=role, held=held)


def _check_hypermodel(hypermodel):
    if hypermodel is not None and not (hasattr(hypermodel, "build") or callable(hypermodel)):
        v.fail("Expected `hypermodel` to be a keras_tuner.HyperModel or a build(hp) function.",
               "hypermodel", hypermodel)


@contextlib.contextmanager
def _callers_dtype_policy():
    """`runtime.configure` sets the global dtype policy; the caller's comes back."""
    import keras

    policy = keras.config.dtype_policy()
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)


@_callers_dtype_policy()
@memory.existing_objects_frozen()  # collections walk only what the search makes
def _search(c, *, hypermodel, tuner_class, stream, role, held):
    """The search of settings `c` (a `SearchConfig`), in the role `role`."""
    import cnnzoo.data
    from tuning import report, reuse, tuners
    from tuning.hypermodel import ZooHyperModel

    start = time.perf_counter()

    def say(text):
        if not c.quiet:
            print(text, file=stream, flush=True)

    ds = cnnzoo.data.load_dataset(c.data, image_size=c.image_size, num_samples=c.num_samples,
                                  seed=c.seed, color_mode=c.color_mode,
                                  skip_bad_images=c.skip_bad_images,
                                  validation_data=c.validation_data)
    _check_data(ds, c.objective)
    input_size = c.input_size
    if c.weights is not None and input_size is None and c.image_size is None:
        # The weights' training size, for images of another size (as `train`).
        from cnnzoo import transfer

        input_size = transfer.default_input_size(c.model, c.weights, ds.input_shape)
    # The frozen backbone's features, computed once (`tuning.features`); with
    # fine-tuning, the output of the stages that no trial unfreezes (none with
    # unfreeze "all"). Not with augmentation: the backbone sees other images
    # in every epoch.
    every_stage = c.fine_tune_epochs and "all" in (
        c.unfreeze if isinstance(c.unfreeze, list) else [c.unfreeze or "all"])
    features = (hypermodel is None and c.weights is not None and c.cache_features
                and not every_stage and c.augment == "none")
    tuning_kwargs = {k: getattr(c, k) for k in ("fine_tune_epochs", "unfreeze",
                                                 "fine_tune_learning_rate")
                     if getattr(c, k)}

    def zoo_hypermodel(jit, features=False):
        # Every trial trains `c.epochs` of ceil(train / batch) steps: what a schedule spans.
        return ZooHyperModel(
            c.model, input_shape=ds.input_shape, num_classes=ds.num_classes,
            input_size=input_size, jit_compile=jit, weights=c.weights, features=features,
            recipe=c.recipe(), steps_per_epoch=math.ceil(len(ds.x_train) / c.batch_size),
            epochs=c.epochs, **tuning_kwargs,
            **(c.hypermodel_kwargs or {}))

    def build_default():
        return (hypermodel or zoo_hypermodel(False)).build(_default_hp())

    # Counted before TensorFlow starts, so that the threads can still be set.
    step_flops = (runtime.count_step_flops(build_default, c.batch_size)
                  if c.threads == "auto" else None)
    setup = runtime.configure(c.precision, c.jit, model=c.model if hypermodel is None else None,
                              threads=c.threads, step_flops=step_flops)
    say(f"Backend: {setup['backend']} | devices: {', '.join(setup['devices'])} | "
        f"precision: {setup['precision']} | XLA: {'on' if setup['jit'] else 'off'}"
        + (f" | intra-op threads: {setup['threads']}" if setup["threads"] else ""))
    strategy = _distribution_strategy(c.distribution, setup["backend"], say)
    say(f"Data: {ds.name}: {len(ds.x_train)} train / {len(ds.x_val)} validation / "
        f"{len(ds.x_test)} test images of {'x'.join(map(str, ds.input_shape))}, "
        f"{ds.num_classes} classes" + _resize_text(c.model, ds.input_shape, input_size,
                                                   hypermodel, c.weights))
    given = cnnzoo.data.origin_text(ds.origin)
    if given:
        say(f"In memory: {given}")
    if hypermodel is None:
        hypermodel = zoo_hypermodel(setup["jit"], features)
        from cnnzoo import recipe as recipes

        say(f"Recipe: {recipes.describe(c)}")
    x_train, x_val = ds.x_train, ds.x_val
    if features:
        from tuning.features import features_for

        x_train, x_val, path, how = features_for(c.out, hypermodel, ds.x_train, ds.x_val,
                                                 precision=setup["precision"],
                                                 batch_size=c.batch_size)
        runtime.clear_session()  # the backbone is not needed again
        shape = "x".join(map(str, x_train.shape[1:]))
        what, rest = ("the frozen backbone's outputs", "its head") if not c.fine_tune_epochs \
            else ("the outputs of the stages no trial unfreezes", "the rest of the model")
        say(f"Features: {what} ({shape} per image) for {len(x_train)} train + {len(x_val)} "
            f"validation images, {how} ({path}); every trial trains {rest} on them")
    elif c.weights is not None and every_stage:
        say("Features: not cached: with --unfreeze all each trial's fine-tuning phase "
            "trains through the whole backbone (its first phase runs it frozen too)")
    elif c.weights is not None and c.augment != "none":
        say(f"Features: not cached: the {c.augment} augmentation changes every image in "
            f"every epoch, so every trial runs the frozen backbone on the augmented images")
    elif c.weights is not None:
        say("Features: not cached (--no-cache-features): every trial runs the frozen "
            "backbone")
    _preflight(hypermodel, ds, c.model, strategy, sample=x_train[:2])

    # What search.json records (`SearchConfig`'s `record` fields; the
    # precision as asked: "auto" is this machine's choice), and the space.
    settings = dict(c.recorded(), space=_space_description(hypermodel))
    # Data in memory: their form, shapes, dtypes and content hash (never the arrays).
    given = cnnzoo.data.record(c.data, ds) or {}
    if "form" in given:
        settings["data"] = {"dataset": ds.name, **{k: val for k, val in given.items()
                                                   if k != "validation_data"}}
    if "validation_data" in given:
        settings["validation_data"] = given["validation_data"]
    overwrite = c.overwrite
    if role == "worker":
        # The folder is the chief's: a worker never starts it afresh (Keras
        # Tuner would delete the state the chief and the other workers share).
        # Its settings are checked once the chief, which writes them before
        # it serves, answers (`before_trials`).
        overwrite = False
    else:
        from tuning import state

        held.enter_context(state.search_lock(c.out))  # one search of a folder at a time
        _check_settings(c.out, settings, overwrite)

    the_tuner = tuners.make_tuner(
        c.tuner, hypermodel, directory=c.out, objective=c.objective, max_trials=c.max_trials,
        epochs=c.epochs, seed=c.seed, overwrite=overwrite, distribution_strategy=strategy,
        max_consecutive_failures=c.max_consecutive_failures, tuner_class=tuner_class,
        stream=stream, quiet=c.quiet, dtype_policy=setup["precision"])
    the_tuner.worker_timeout = c.worker_timeout
    if role == "worker":
        the_tuner.before_trials = functools.partial(_check_settings, c.out, settings, False,
                                                    worker=True)
    oracle = the_tuner.oracle
    total = tuners.expected_trials(oracle)
    say(f"Search space: {_space_description(hypermodel)}")
    say(f"Compiled models: {reuse.sharing(the_tuner)}")
    if the_tuner.resumed:
        finished = sum(t.status in ("COMPLETED", "FAILED") for t in oracle.trials.values())
        again = oracle.interrupted_trials()
        say(f"Resuming the search in {c.out}: {finished} of {total or '?'} trials finished"
            + (f", {len(again)} interrupted to run again" if again else ""))
    if role == "worker":
        say(f"{the_tuner.tuner_id}: asking the chief at {c.chief} for trials")
    else:
        say(f"Searching with {c.tuner}: {total or '?'} trials of up to {c.epochs} epochs, "
            f"objective {c.objective}; results in {c.out}")

    callbacks = _tensorboard(c.out, setup["backend"])
    the_tuner.search(x_train, ds.y_train, validation_data=(x_val, ds.y_val),
                     epochs=c.epochs, batch_size=c.batch_size, verbose=0,
                     **({"callbacks": callbacks} if callbacks else {}))

    if role == "worker":
        ran = ", ".join(str(int(t) + 1) if t.isdigit() else t for t in the_tuner.trials_run)
        say(f"{the_tuner.tuner_id}: search over; ran trials {ran or 'none'}")
        return SearchResult(out=c.out, role=role, trials=[], best=None, files={},
                            test_metrics={}, resumed=False,
                            seconds=time.perf_counter() - start)

    direction = oracle.objective.direction
    rows = report.collect(oracle)
    ranked = report.rank(rows, direction)
    best = ranked[0] if ranked and ranked[0]["status"] == "COMPLETED" else None
    meta = dict(settings, backend=setup["backend"], devices=setup["devices"],
                precision=setup["precision"], jit=setup["jit"], threads=setup["threads"],
                distribution=c.distribution, role=role, fixed=hypermodel.fixed_values()
                if hasattr(hypermodel, "fixed_values") else {})
    files = {}
    say("")
    say(report.table(rows, direction))
    plot_path = report.plot(rows, os.path.join(c.out, "objective_vs_rates.png"),
                            objective=c.objective, direction=direction)
    if plot_path:
        files["plot"] = plot_path
    test_metrics = {}
    meta["test_metrics"] = test_metrics
    # Written before the export too: the trials' results stay whatever it meets.
    files["json"], files["csv"] = report.write_results(rows, c.out, meta=meta,
                                                       direction=direction)
    if best is not None and c.export:
        test_metrics, model_path = _export_best(the_tuner, hypermodel, oracle, best, ds, c.out,
                                                meta, say, c.epochs, c.batch_size,
                                                x_train=x_train)
        files["model"] = model_path
        meta["test_metrics"] = test_metrics
        report.write_results(rows, c.out, meta=meta, direction=direction)
    seconds = time.perf_counter() - start
    if best is None:
        say("No trial completed: nothing to export.")
    else:
        say(f"Best: trial {best['trial']} with {c.objective}={best['score']:.4f} "
            f"({report_values(best['values'])})"
            + (f"; test accuracy {test_metrics['accuracy']:.4f}"
               if "accuracy" in test_metrics else ""))
    logs = os.path.join(c.out, LOG_DIR)
    if callbacks and os.path.isdir(logs):
        files["logs"] = logs
    for name in ("json", "csv", "plot", "model"):
        if name in files:
            say(f"  {name:<5} {files[name]}")
    if "logs" in files:
        say(f"  logs  tensorboard --logdir {shlex.quote(logs)}   # the trials side by side "
            f"(HParams)")
    if best is not None:
        say("Next:")
        if "model" in files:
            say(f"  cnnzoo predict {shlex.quote(files['model'])} IMAGE")
        if type(hypermodel) is ZooHyperModel:  # a hypermodel of one's own: no command
            say(f"  {train_command(c, {**meta['fixed'], **best['values']})}"
                f"   # the best configuration, trained longer")
    say(f"Done in {seconds:.1f} s.")
    return SearchResult(out=c.out, role=role, trials=ranked, best=best, files=files,
                        test_metrics=test_metrics, resumed=the_tuner.resumed, seconds=seconds)


def _tensorboard(out, backend):
    """`search`'s callbacks: Keras's `TensorBoard` writing under `out/logs`.

    Keras Tuner gives each trial its folder, `logs/<trial id>/execution0`,
    and adds TensorBoard's HParams callback (the trial's values, for the
    HParams dashboard), on the TensorFlow backend only: elsewhere every
    trial would write into one folder, so there are none.
    """
    if backend != "tensorflow":
        return []
    import keras

    return [keras.callbacks.TensorBoard(log_dir=os.path.join(out, LOG_DIR), write_graph=False)]


def train_command(c, values, epochs=None):
    """The `cnnzoo train` command that trains the zoo configuration `values` of search `c`.

    For data given in memory, the `cnnzoo.train.train` call instead (on
    `data`, and `validation_data` where the search had one). The same data
    (and splits: the same seed), model, weights, recipe and precision, for
    `epochs` (defaults to twice the search's, and twice its fine-tuning
    epochs), into `<out>/best_run`.

    Args:
        c: the search's `SearchConfig`.
        values: the trial's values (its hyperparameters and the fixed ones).
        epochs: the run's epochs. Defaults to `2 * c.epochs`.
    """
    from cnnzoo import recipe as recipes

    stages = [k for k in values if k.startswith("block_dropout_rate_")]  # per stage
    blocks = [values[k] for k in sorted(stages, key=lambda k: int(k.rsplit("_", 1)[1]))]
    knobs = {"dropout_rate": values.get("dropout_rate"),
             "block_dropout_rate": (",".join(f"{r:g}" for r in blocks) if blocks
                                    else values.get("block_dropout_rate")),
             "dropout_type": values.get("dropout_type"), "activation": values.get("activation")}
    # The recipe's settings where they are not train's defaults; the searched ones always.
    searched = {k: values[k] for k in ("learning_rate", "weight_decay", "label_smoothing")
                if k in values}
    settings = {k: getattr(c, k) for k, default in recipes.defaults().items()
                if getattr(c, k) != default}
    data = {k: getattr(c, k) for k in ("num_samples", "image_size", "color_mode", "weights",
                                       "input_size")}
    if c.weights is not None and not c.fine_tune_epochs:
        # The backbone stays frozen, without dropout: train's defaults.
        knobs["block_dropout_rate"] = knobs["dropout_type"] = None
    tuned = {}
    if c.fine_tune_epochs:
        rate = values.get("fine_tune_learning_rate")  # a number, or "learning_rate / 10"
        tuned = {"fine_tune_epochs": 2 * c.fine_tune_epochs if epochs is None
                 else c.fine_tune_epochs, "unfreeze": values.get("unfreeze"),
                 "fine_tune_learning_rate": rate if isinstance(rate, float) else None}
    options = {**data, **knobs, **tuned, **settings, **searched}
    out = os.path.join(c.out, "best_run")
    epochs = epochs or 2 * c.epochs
    if not isinstance(c.data, (str, os.PathLike)):
        # Data in memory have no command line: the Python call, on the same data.
        kwargs = {k: val for k, val in options.items() if val is not None}
        if blocks:
            kwargs["block_dropout_rate"] = blocks  # one rate per stage, as a list
        kwargs.update(skip_bad_images=c.skip_bad_images or None, seed=c.seed,
                      batch_size=c.batch_size, precision=c.precision, epochs=epochs, out=out)
        given = ", validation_data=validation_data" if c.validation_data is not None else ""
        return (f"cnnzoo.train.train({c.model!r}, data{given}, "
                + ", ".join(f"{k}={val!r}" for k, val in kwargs.items() if val is not None)
                + ")")
    argv = ["cnnzoo", "train", "--model", c.model, "--data", str(c.data)]
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            value = ",".join(str(x) for x in value)
        elif isinstance(value, float):
            value = f"{value:g}"
        argv += ["--" + name.replace("_", "-"), str(value)]
    if c.skip_bad_images:
        argv.append("--skip-bad-images")
    argv += ["--seed", str(c.seed), "--batch-size", str(c.batch_size), "--precision",
             c.precision, "--epochs", str(epochs), "--out", out]
    return " ".join(shlex.quote(a) for a in argv)


def report_values(values):
    from tuning.progress import format_values

    return format_values(values)


# -- set-up checks ---------------------------------------------------------------


def _check_data(ds, objective):
    import numpy as np

    for split in ("train", "val"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if split == "val" and objective.startswith("val_") and len(x) == 0:
            v.fail(f"Expected validation examples for the objective `{objective}`; the "
                   f"dataset has none (raise its validation split).", "objective", objective)
        if len(x) == 0:
            continue
        if x.ndim != 4 or len(x) != len(y):
            v.fail(f"Expected {split} images as (N, height, width, channels) and one label "
                   f"each.", f"x_{split}.shape", x.shape)
        if not np.isfinite(x).all():
            v.fail(f"Expected finite pixel values in the {split} split.", "data", ds.name)
        if y.min() < 0 or y.max() >= ds.num_classes:
            v.fail(f"Expected {split} labels in 0..{ds.num_classes - 1}.", "labels",
                   (int(y.min()), int(y.max())))


def _resize_text(model, input_shape, input_size, hypermodel, weights=None):
    """`"; 8x8 images, resized to 32x32 inside the model: vgg16's minimum"`, or `""`.

    Only for a zoo model (a hypermodel of one's own sizes its input itself),
    and only where the images are resized.
    """
    from cnnzoo import pipeline
    from tuning.hypermodel import ZooHyperModel

    if hypermodel is not None and not isinstance(hypermodel, ZooHyperModel):
        return ""
    size = pipeline.model_input_size(model, input_shape, input_size)[1]
    text = pipeline.describe_resize(model, input_shape, size, weights=weights, unchanged=None)
    return f"; {text}" if text else ""


def _default_hp():
    import keras_tuner as kt

    return kt.HyperParameters()


def _preflight(hypermodel, ds, model_name, strategy, sample=None):
    """Builds the model once with the default hyperparameters and runs two images.

    `sample`: what the model takes instead (a head model: two images' features).
    """
    import contextlib

    import keras
    import keras_tuner as kt
    import numpy as np

    from tuning.hypermodel import ZooHyperModel

    if not isinstance(hypermodel, ZooHyperModel):  # the user's: named as such
        model_name = getattr(hypermodel, "name", None) or type(hypermodel).__name__
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    try:
        with scope:
            model = hypermodel.build(kt.HyperParameters())
        if not isinstance(model, keras.Model):
            raise TypeError(f"build(hp) returned {type(model).__name__}, not a keras.Model")
        sample = ds.x_train[:2] if sample is None else sample
        outputs = keras.ops.convert_to_numpy(model(sample, training=False))
    except ValueError as error:
        detail = " ".join(str(error).split())
        if "Received:" not in detail:
            detail = f"{detail.rstrip('.')}. Received: model={model_name!r}"
        raise ValueError(f"The model cannot be built for this data ({model_name} on "
                         f"{ds.input_shape} images, {ds.num_classes} classes): "
                         f"{detail}") from error
    except Exception as error:  # any other failure is a set-up error too
        v.fail(f"The model cannot be built for this data ({model_name} on {ds.input_shape} "
               f"images, {ds.num_classes} classes): {type(error).__name__}: "
               f"{' '.join(str(error).split())}.", "model", model_name)
    if outputs.shape != (2, ds.num_classes):
        v.fail(f"Expected the model to output ({ds.num_classes},) class probabilities per "
               f"image, got {outputs.shape[1:]}.", "model", model_name)
    if not np.isfinite(outputs).all():
        v.fail("Expected finite outputs from the freshly built model.", "model", model_name)
    del model
    runtime.clear_session()  # keeping the precision `configure` set


def _distribution_strategy(distribution, backend, say):
    if distribution == "none":
        return None
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        say(f"Distribution: MirroredStrategy over {strategy.num_replicas_in_sync} replica(s)")
        return strategy
    if backend == "jax":
        import keras

        # Keras's data parallelism is the JAX equivalent of MirroredStrategy:
        # each batch split over the local devices, weights replicated.
        dist = keras.distribution.DataParallel()
        keras.distribution.set_distribution(dist)
        say(f"Distribution: keras.distribution.DataParallel over "
            f"{len(keras.distribution.list_devices())} device(s) (JAX)")
        return None
    v.fail(f"Expected the TensorFlow or JAX backend for `--distribution mirrored` (this is "
           f"{backend}); run with KERAS_BACKEND=tensorflow or jax.", "distribution",
           distribution)


def _space_description(hypermodel):
    import keras_tuner as kt

    if hasattr(hypermodel, "defaults"):
        hp = kt.HyperParameters()
        hypermodel.declare(hp)
    else:
        hp = kt.HyperParameters()
        hypermodel.build(hp)
    parts = []
    for item in hp.space:
        config = item.get_config()
        if "values" in config:
            parts.append(f"{item.name} in {config['values']}")
        else:
            high = round(config["max_value"], 6)
            step = f" step {config['step']:g}" if config.get("step") else ""
            log = " (log)" if config.get("sampling") == "log" else ""
            parts.append(f"{item.name} in [{config['min_value']:g}, {high:g}]{step}{log}")
    if hasattr(hypermodel, "fixed_values"):
        parts += [f"{k}={val}" for k, val in hypermodel.fixed_values().items()]
    return "; ".join(parts)


def _check_settings(out, settings, overwrite, worker=False):
    """Refuses settings that differ from the search in `out`; records them there.

    A worker's are checked against the chief's (`search.json`, where the
    folder is shared), and not recorded.
    """
    import json

    path = os.path.join(out, SETTINGS_FILE)
    if os.path.exists(path) and not overwrite:
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = {}
        # A setting the folder's search.json predates had its default there.
        recorded = {**config.defaults(), **old} if old else {}
        diffs = v.differences(recorded, settings,
                              [k for k in _IDENTITY if k in recorded and k in settings])
        if diffs and worker:
            v.fail(f"The chief's search in this folder has other settings ({'; '.join(diffs)})"
                   f". Give every worker the chief's options.", "out", out)
        if diffs:
            v.fail(f"The folder holds a search with other settings ({'; '.join(diffs)}). "
                   f"Pass --overwrite (overwrite=True) to start afresh there, or choose "
                   f"another --out.", "out", out)
        started = _started_trials(out)
        if not worker and settings["tuner"] != "hyperband" and started > settings["max_trials"]:
            v.fail(f"Expected `max_trials` at least the {started} trials the search in {out} "
                   f"has started (a larger value extends it).", "max_trials",
                   settings["max_trials"])
    if not worker:
        _atomic.write_json(os.path.join(out, SETTINGS_FILE), settings)


def _started_trials(out):
    """How many trials the search in `out` has started: ended, or interrupted to run again."""
    import glob

    from tuning.tuners import PROJECT_NAME

    return len(glob.glob(os.path.join(glob.escape(out), PROJECT_NAME, "trial_*", "trial.json")))


# -- the best model -----------------------------------------------------------------


def _exported_already(out, best):
    """`(test_metrics, path)` of an export of this very best trial in `out`, else `None`.

    A finished search run again (or extended without a better trial) keeps
    its export instead of training, evaluating and exporting it again.
    """
    import json

    for path, card_path in ((os.path.join(out, "best_model"),
                             os.path.join(out, "best_model", "model_card.json")),
                            (os.path.join(out, "best_model.keras"),
                             os.path.join(out, "best_model_card.json"))):
        if not (os.path.exists(path) and os.path.isfile(card_path)):
            continue
        try:
            with open(card_path) as f:
                card = json.load(f)
        except (OSError, ValueError):
            continue
        trial = card.get("best_trial") if isinstance(card, dict) else None
        if isinstance(trial, dict) and trial.get("trial") == best["trial"] \
                and trial.get("hyperparameters") == best["values"] \
                and trial.get("validation") == {k: best[k] for k in ("val_accuracy",
                                                                    "val_loss")}:
            return card.get("test") or {}, path
    return None


def _export_best(the_tuner, hypermodel, oracle, best, ds, out, meta, say, epochs, batch_size,
                 x_train=None):
    import keras

    done = _exported_already(out, best) if the_tuner.resumed else None
    if done is not None:
        say(f"The best model in {done[1]} is this search's best trial already; kept.")
        return done
    trial = oracle.get_trial(best["trial_id"])
    keras.config.set_dtype_policy(the_tuner.dtype_policy)  # as the trials were built
    try:
        model = the_tuner.load_model(trial)
    except (OSError, ValueError, FileNotFoundError) as error:
        # A distributed search without a shared folder: the worker kept the
        # checkpoint. Train the best trial again here, as the search trained
        # it, up to its best epoch.
        say(f"The best trial's checkpoint is not readable here ({type(error).__name__}); "
            f"training its configuration again to export it.")
        model = the_tuner.train_again(trial, ds.x_train if x_train is None else x_train,
                                      ds.y_train,
                                      epochs=int(best.get("best_epoch") or epochs),
                                      batch_size=batch_size)
    if hasattr(hypermodel, "exportable"):
        model = hypermodel.exportable(model, trial.hyperparameters)
    test_metrics = {}
    if len(ds.x_test):
        test_metrics = {k: float(val) for k, val in
                        model.evaluate(ds.x_test, ds.y_test, verbose=0,
                                       return_dict=True).items()}
    validation = {k: best[k] for k in ("val_accuracy", "val_loss")}
    # The export merges these into its own card's `model` and `training`
    # sections (name, parameters, dropout layers, input spec stay its own).
    card = {
        "model": {"config": {"model": meta["model"], **meta.get("fixed", {}),
                             **best["values"]}},
        "training": {
            "data": meta["data"],
            "metrics": {"val": validation, "test": test_metrics},
            "best_epoch": best.get("best_epoch"),
            "by": "cnnzoo tune",
        },
        "task": "image classification",
        "class_names": list(ds.class_names),
        # `SearchConfig`'s `card` fields (the precision as it ran), the space and backend.
        "search": {k: meta[k] for k in (*config.card_fields(), "space", "backend")},
        "best_trial": {
            "trial": best["trial"],
            "hyperparameters": best["values"],
            "fixed": meta.get("fixed", {}),
            "validation": validation,
            "best_epoch": best.get("best_epoch"),
        },
        "test": test_metrics,
    }
    path = os.path.join(out, "best_model")
    try:
        from cnnzoo.export import export_saved_model
    except ImportError:
        export_saved_model = None
    try:
        if export_saved_model is None:
            raise ImportError("cnnzoo.export is not available")
        exported = export_saved_model(model, path, overwrite=True,
                                      class_names=list(ds.class_names), model_card=card,
                                      verbose=False)
        check = exported["verification"]
        say(f"Exported the best model to {path} as a SavedModel (reload max |difference| "
            f"{check['max_abs_diff']:.3g}, tolerance {check['tolerance']:g}).")
    except ImportError as error:
        # A SavedModel needs TensorFlow; JAX-only machines get a .keras file.
        path = os.path.join(out, "best_model.keras")
        say(f"No SavedModel ({error}); saving {path} instead.")
        _save_keras(model, path)
        _atomic.write_json(os.path.join(out, "best_model_card.json"), card)
    return test_metrics, path


def _save_keras(model, path):
    # The export's copy never trained: its optimizer has no slots yet. Saved
    # so, every `keras.saving.load_model` of the file (which builds the
    # optimizer) warned that the optimizer's variables did not match.
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    _atomic.save_keras(model, path)
