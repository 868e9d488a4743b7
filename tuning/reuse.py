"""One compiled model reused across trials that differ only in values held in variables.

Tracing a model's training step can cost more than a whole trial's training
on `digits` (`benchmarks/README.md`, "Trials per hour: the search traces
once"). A hypermodel that holds some of its
hyperparameters in variables (`ZooHyperModel` builds its dropout as
`cnnzoo.layers.VariableDropout`, whose rate and kind are variables; a
constant learning rate is a variable of the optimizer) says which, as the
set `variable_hyperparameters`. Two trials whose other values are equal then
build models of the same structure, and `ReuseMixin` trains the second on
the compiled model of the first: before each trial, every variable of the
kept model (weights, batch-norm statistics, dropout rates and kinds, random
seed states, the optimizer's step, learning rate and slots) is assigned from
a freshly built, never traced model of the trial, seeded as the trial is.
Nothing is traced or compiled again, and each trial ends exactly as it would
on its own fresh model (`tests/test_reuse.py`). Values compiled into the
step (a searched weight decay or label smoothing, a scheduled learning rate)
split the trials into groups of equal values, one model each: the search
says so as it starts (`sharing`) and when a trial needs a new model. With
`reuse` off, every trial builds and traces a model of its own and trains it
on the same batches, ending as it would with the reuse on.

The mixin works through Keras Tuner's public tuner hooks (`run_trial`,
`on_trial_end`, `on_search_end`) and trains with `hypermodel.fit`, on
`cnnzoo.input_pipeline`'s seeded batches, whose order depends on the
search's seed only. A trial trains through Keras Tuner's own `run_trial`
instead (a fresh model after `clear_session`) when its hypermodel declares
no `variable_hyperparameters`, defines a `fit` of its own, or a `build` that
the declaration was not written for (a subclass changing `build` alone);
under a distribution strategy; with more than one execution per trial; or
with data or `fit` arguments other than arrays and the usual settings
(`search`'s callbacks are copied for each trial, a `TensorBoard`'s folder
set per trial, as Keras Tuner's `run_trial` does).
"""

import time

import keras

from cnnzoo import _validation as v
from cnnzoo.runtime import prepare_training, seed_trial
from tuning import _compat_keras_tuner as compat

# Keras Tuner's own values (Hyperband's epochs, brackets, the trial a
# continued trial starts from): they change how a trial trains, not the model.
BOOKKEEPING_PREFIX = "tuner/"
# What `search` may pass to a reused model's training; anything else trains
# the trial through Keras Tuner's own `run_trial`.
FIT_KEYWORDS = ("x", "y", "epochs", "batch_size", "validation_data", "verbose", "shuffle",
                "callbacks")
# Training steps per call of the compiled function (Keras's `steps_per_execution`).
MAX_STEPS_PER_EXECUTION = 16


def _defined_by(obj, name):
    """The class in `obj`'s MRO whose body defines `name` (`None`: none does)."""
    return next((cls for cls in type(obj).__mro__ if name in vars(cls)), None)


def refusal(hypermodel):
    """Why `hypermodel`'s trials may not share compiled models (`None`: they may).

    The declaration must describe what `build` compiles: a subclass that
    changes `build` (or `build_model`) without declaring again inherits a
    set written for another build. A hypermodel with a `fit` of its own (a
    searched batch size, other data) trains as Keras Tuner would train it.
    """
    import keras_tuner as kt

    owner = _defined_by(hypermodel, "variable_hyperparameters")
    if owner is None:
        return "the hypermodel declares no variable_hyperparameters"
    fit_owner = _defined_by(hypermodel, "fit")
    if fit_owner not in (None, kt.HyperModel) and not issubclass(owner, fit_owner):
        return "the hypermodel has a fit() of its own"
    for name in ("build", "build_model"):
        built_by = _defined_by(hypermodel, name)
        if built_by is not None and not issubclass(owner, built_by):
            return (f"the hypermodel's {name}() is not the one its variable_hyperparameters "
                    f"describe")
    return None


def sharing(tuner):
    """Which trials of `tuner`'s search share a compiled model, and why, in a sentence.

    What the search prints as it starts, so that a searched value that is
    compiled into the training step (the weight decay, the label smoothing,
    a scheduled learning rate) does not turn the reuse off unnoticed.
    """
    hypermodel = tuner.hypermodel
    if not isinstance(tuner, ReuseMixin):
        return f"one per trial ({type(tuner).__name__} builds a model for each)"
    if not tuner.reuse:
        return "one per trial (reuse is off)"
    if tuner.distribution_strategy is not None:
        return "one per trial (under a distribution strategy)"
    if tuner.executions_per_trial != 1:
        return "one per trial (more than one execution per trial)"
    reason = refusal(hypermodel) if hypermodel is not None else "no hypermodel"
    if reason:
        return f"one per trial ({reason})"
    if hasattr(hypermodel, "defaults"):
        searched = list(hypermodel.defaults())
    else:
        searched = [p.name for p in tuner.oracle.get_space().space]
    searched = [n for n in searched if not n.startswith(BOOKKEEPING_PREFIX)]
    held = frozenset(hypermodel.variable_hyperparameters)
    compiled = [n for n in searched if n not in held]
    variables = [n for n in searched if n in held]
    verb = "is a variable" if len(variables) == 1 else "are variables"
    in_variables = f"{', '.join(variables)} {verb} of the model" if variables else ""
    if not compiled:
        return "one for every trial" + (f" ({in_variables})" if variables else "")
    return (f"trials share one only where they agree on {', '.join(compiled)} (compiled into "
            f"the training step, not held in variables"
            + (f"; {in_variables}" if variables else "") + ")")


def key_differences(old, new):
    """`"weight_decay=0.001 (was 0.0001)"`: where two reuse keys differ."""
    a, b = dict(old), dict(new)
    return ", ".join(f"{k}={b.get(k)} (was {a.get(k)})" for k in sorted(set(a) | set(b))
                     if a.get(k) != b.get(k))


def reuse_key(values, held):
    """What two trials must share to train on one compiled model: every other value."""
    return tuple(sorted((k, repr(val)) for k, val in values.items()
                        if k not in held and not k.startswith(BOOKKEEPING_PREFIX)))


def steps_per_execution(steps_per_epoch, limit=MAX_STEPS_PER_EXECUTION):
    """The largest divisor of `steps_per_epoch` up to `limit` (1 when unknown).

    Keras runs `steps_per_execution` steps per call, also past an epoch's
    end when the epoch is not a whole number of calls (from an endless
    dataset such as `cnnzoo.input_pipeline`'s, that would train more steps
    per epoch): a divisor keeps every epoch exactly `steps_per_epoch` steps.
    Keras's torch backend runs one step per call (it refuses more): 1 there.
    """
    import keras

    if not steps_per_epoch or keras.backend.backend() == "torch":
        return 1
    return max(d for d in range(1, limit + 1) if steps_per_epoch % d == 0)


def compile_signature(model):
    """What must be equal for one compiled model to train another's trial.

    The compile configuration (loss, metrics, optimizer class and settings)
    but a constant learning rate, which is a variable of the optimizer (a
    schedule, whose rates are constants of the traced step, stays in).
    """
    import json

    config = dict(model.get_compile_config() or {})
    optimizer = config.get("optimizer")
    if isinstance(optimizer, dict):
        inner = dict(optimizer.get("config") or {})
        if not isinstance(inner.get("learning_rate"), dict):
            inner.pop("learning_rate", None)
        inner.pop("name", None)
        config["optimizer"] = {**optimizer, "config": inner}
    return json.dumps(config, sort_keys=True, default=repr) + f"|jit={model.jit_compile}"


def _same_shapes(targets, sources):
    return len(targets) == len(sources) and all(
        tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype
        for a, b in zip(targets, sources))


def reset_from(kept, fresh):
    """Makes the compiled `kept` model start as the freshly built `fresh` one would.

    Every variable (weights, batch-norm statistics, dropout rates and kinds,
    random-seed states) is assigned from its fresh twin, and the optimizer's
    (step count, learning rate, slots) from the fresh model's optimizer built
    over the kept model's weights. Returns `False`, changing nothing, when
    the structures differ.
    """
    if not _same_shapes(kept.variables, fresh.variables):
        return False
    template = fresh.optimizer
    template.build(kept.trainable_variables)
    if not _same_shapes(kept.optimizer.variables, template.variables):
        return False
    for a, b in zip(kept.variables, fresh.variables):
        a.assign(b)
    for a, b in zip(kept.optimizer.variables, template.variables):
        a.assign(b)
    return True


class BestEpochCheckpoint(keras.callbacks.Callback):
    """Keras Tuner's best-epoch checkpoint, written once when training ends.

    Keras Tuner saves a trial's weights to its checkpoint file at every
    epoch that improves the objective, which on a short trial (`simple_cnn`
    on `digits`) is a sizeable part of its time. Here the weights are copied in
    memory at the best epoch and written to the same file once, when
    training ends; a trial killed before then runs again on resume anyway.
    When the best epoch is the last one (training's `epochs`), no later
    epoch can change its weights: they are written at once, without a copy
    out and back (for ResNet-18, "best-epoch weights copied in memory" in
    `benchmarks/RESULTS_search_resnet18.md`). The file always holds the best
    epoch's weights (Keras Tuner loads a trial's model from it). The model is
    set back to them where the best epoch was an earlier one; where it was
    the last, it keeps what training left, which differs only where another
    callback changed the weights as training ended (an
    `EarlyStopping(restore_best_weights=True)` watching another metric).
    """

    def __init__(self, objective, path):
        super().__init__()
        self.objective = objective
        self.path = path
        self.best = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.objective.name)
        if value is None:
            return
        if self.best is None or self.objective.better_than(value, self.best):
            self.best = value
            self.best_weights = None
            if epoch + 1 == (self.params or {}).get("epochs"):
                self.model.save_weights(self.path)
            else:
                self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.model.save_weights(self.path)


class _NoWindow:
    """Per-trial memory windows: here a kept model's lifetime is the window."""

    def begin(self):
        pass

    def end(self):
        pass


class _Kept:
    """A compiled model kept between trials, with what it was built for."""

    def __init__(self, key, model, signature):
        self.key = key
        self.model = model
        self.signature = signature


def _split_fit(args, kwargs):
    """`(x, y, settings)` for a reused model's training, or `None` where it does not apply."""
    kwargs = dict(kwargs)
    args = list(args)
    x = args.pop(0) if args else kwargs.pop("x", None)
    y = args.pop(0) if args else kwargs.pop("y", None)
    if args or not (hasattr(x, "shape") and hasattr(y, "shape")):
        return None
    if not kwargs.get("callbacks"):
        kwargs.pop("callbacks", None)
    if any(name not in FIT_KEYWORDS for name in kwargs):
        return None
    validation = kwargs.get("validation_data")
    if validation is not None and not (isinstance(validation, (tuple, list))
                                       and len(validation) == 2):
        return None
    return x, y, kwargs


class ReuseMixin:
    """Reuses one compiled model across trials; mixed in before `ZooTunerMixin`.

    Args:
        reuse: whether to keep compiled models between trials. Defaults to
            `True`; with `False` every trial builds, traces and trains a model
            of its own, on the same seeded batches (the same results, slower:
            what the reuse saves, measured alone).
        **kwargs: passed to the tuner (see `tuning.tuners.ZooTunerMixin`).
    """

    def __init__(self, oracle, hypermodel=None, *, reuse=True, **kwargs):
        self.reuse = v.check_bool("reuse", reuse)
        super().__init__(oracle, hypermodel, **kwargs)
        # One memory window per compiled model, not per trial: it opens as a
        # model is built and closes (clearing the session) as it is dropped.
        self.model_memory = self.memory
        self.memory = _NoWindow()
        self._window_open = False
        self._kept = None
        # How many models this tuner built and traced for its trials.
        self.models_built = 0

    # -- which trials share a model ----------------------------------------------

    def trial_reuse_key(self, trial):
        """The key of the compiled model `trial` may train on.

        `None`: the trial trains through Keras Tuner's own `run_trial`. With
        `reuse` off, the key still says how the trial trains (as a reused
        model would, on a model built for it alone).
        """
        hypermodel = self.hypermodel
        if (hypermodel is None or self.distribution_strategy is not None
                or self.executions_per_trial != 1 or refusal(hypermodel)):
            return None
        return reuse_key(trial.hyperparameters.values,
                         frozenset(hypermodel.variable_hyperparameters))

    # -- Keras Tuner's hooks -------------------------------------------------------

    def run_trial(self, trial, *args, **kwargs):
        key = self.trial_reuse_key(trial)
        data = _split_fit(args, kwargs) if key is not None else None
        if data is None:
            # Keras Tuner's own way, on a fresh model (`ZooTunerMixin.run_trial`).
            self.release_model()
            self._open_window()
            return super().run_trial(trial, *args, **kwargs)
        start = time.perf_counter()
        x, y, fit = data
        seed_trial(self.trial_seed(trial))
        model = self._model_for(trial, key)
        history = self._fit(trial, model, x, y, fit)
        compat.save_build_config(self, trial.trial_id, model)
        return self.report(trial, [history], time.perf_counter() - start)

    def on_trial_end(self, trial):
        if self._kept is None or trial.status != "COMPLETED" or not self.reuse:
            # A failed trial's model may hold half a step: the next starts afresh.
            self.release_model()
        super().on_trial_end(trial)

    def search_trials(self, *fit_args, **fit_kwargs):
        try:
            super().search_trials(*fit_args, **fit_kwargs)
        finally:
            self.release_model()

    def train_again(self, trial, x, y, *, epochs, batch_size):
        """A model of `trial` trained from scratch as the search trained it, for `epochs`.

        For exporting a trial whose checkpoint is not readable here: its
        seed and the search's seeded batches give, up to the same epoch, the
        trial's weights (where it started from scratch; Hyperband's
        continued trials do not).
        """
        if self.trial_reuse_key(trial) is None:
            return super().train_again(trial, x, y, epochs=epochs, batch_size=batch_size)
        from cnnzoo import input_pipeline

        seed_trial(self.trial_seed(trial))
        model = self._build(trial)
        prepare_training(model, x, y)
        self.hypermodel.fit(trial.hyperparameters, model,
                            **input_pipeline.train_data(x, y, batch_size=batch_size,
                                                        seed=self.seed),
                            epochs=epochs, verbose=0)
        return model

    # -- the kept model ------------------------------------------------------------

    def _open_window(self):
        if not self._window_open:
            self.model_memory.begin()
            self._window_open = True

    def release_model(self):
        """Drops the compiled model kept between trials and frees what it held."""
        self._kept = None
        if self._window_open:
            self._window_open = False
            self.model_memory.end()

    def _build(self, trial):
        # Keras Tuner's `_try_build` without its `clear_session`, which the
        # memory window does once per compiled model, not per trial.
        import keras_tuner as kt

        model = compat.build_model(self, trial.hyperparameters)
        if not isinstance(model, keras.Model):
            raise kt.errors.FatalTypeError(
                f"Expected the model-building function, or HyperModel.build() to return a "
                f"valid Keras Model instance. Received: {model} of type {type(model)}.")
        if self.max_model_size and model.count_params() > self.max_model_size:
            raise kt.errors.FailedTrialError(
                f"Oversized model: {model.count_params()} parameters. Skip model.")
        return model

    def _say(self, text):
        # Where the search's progress goes, and not where it is off (quiet).
        if getattr(compat.display(self.oracle), "enabled", True):
            print(text, file=self.stream, flush=True)

    def _model_for(self, trial, key):
        """The compiled model for `trial`, started as its fresh model would be."""
        if self._kept is not None and self._kept.key != key:
            self._say(f"  a new compiled model: {key_differences(self._kept.key, key)}")
            self.release_model()
        self._open_window()
        fresh = self._build(trial)
        signature = compile_signature(fresh)
        kept = self._kept
        if kept is not None:
            if kept.signature == signature and reset_from(kept.model, fresh):
                return kept.model
            self._kept = None  # the window stays open: the fresh model is in it
        self.models_built += 1
        self._kept = _Kept(key, fresh, signature)
        return fresh

    def _fit(self, trial, model, x, y, fit):
        from cnnzoo import input_pipeline

        hp = trial.hyperparameters
        fit = dict(fit)
        if "tuner/epochs" in hp.values:  # Hyperband, as its own run_trial does
            fit["epochs"] = hp.values["tuner/epochs"]
            fit["initial_epoch"] = hp.values["tuner/initial_epoch"]
        batch_size = fit.pop("batch_size", None) or 32
        validation = fit.pop("validation_data", None)
        fit.pop("shuffle", None)  # the pipeline shuffles, seeded
        train = input_pipeline.train_data(x, y, batch_size=batch_size, seed=self.seed)
        if model.train_function is None:
            # Set before the first trace only: one call of the compiled function
            # then runs that many steps (fewer Python round trips per epoch).
            model.steps_per_execution = steps_per_execution(train.get("steps_per_epoch")
                                                            or len(train["x"]))
            # Its optimizer, loss and metrics built first, the step is traced
            # once, not twice.
            prepare_training(model, x, y)
        if validation is not None:
            fit["validation_data"] = input_pipeline.eval_data(
                *validation, batch_size=max(batch_size, 256))["x"]
        checkpoint = BestEpochCheckpoint(self.oracle.objective,
                                         compat.checkpoint_file(self, trial.trial_id))
        # `search`'s own (a TensorBoard's per-trial folder), as Keras Tuner's run_trial.
        callbacks = compat.trial_callbacks(self, fit.pop("callbacks", None) or [], trial)
        return self.hypermodel.fit(hp, model, **train, callbacks=[*callbacks, checkpoint],
                                   **fit)
