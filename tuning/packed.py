"""Packed trials: K trials of a dropout search trained side by side in one Keras model.

Candidates that differ only in their dropout rates (and dropout type) have
the same shapes. `PackedTuner` takes up to K trials from the Keras Tuner
oracle at once, builds each trial's model as usual (`hypermodel.build(hp)`,
seeded as that trial), and joins them as K towers on one shared input:

    images -> tower_0 (trial a) -> probabilities of trial a
           -> tower_1 (trial b) -> probabilities of trial b
           ...

The packed model's loss is the sum of the K towers' losses. The towers
share no weights, so the gradient of the sum with respect to tower k's
weights is exactly the gradient of tower k's own loss, and Adam updates
each weight from its own gradient only: each tower trains as its trial
would alone. What packing buys is hardware use: one step runs K small
models' kernels back to back in one graph, with one Python/dispatch
overhead, one input pipeline and one compiled function instead of K.

Each tower is then reported as its own trial: its metrics (the tower's
`val_accuracy`, `val_loss`, ... of its best epoch), its best-epoch
checkpoint in the trial's folder (the weights of the model
`hypermodel.build(hp)` makes, so `tuner.load_model(trial)` works), its
status. Resume, the distributed mode and the results table therefore work
as for single trials: the oracle sees K tuner IDs (`<id>`, `<id>_pack1`,
...), each holding one ongoing trial, which a worker restarted with the same
ID and the same K gets back (tested with a killed worker process).

One compiled model for the whole search: `ZooHyperModel` builds its
dropout as `cnnzoo.layers.VariableDropout` (rate and type in variables), so
every pack whose trials differ only in dropout can train on the model the
previous pack traced. Before each pack its variables (weights, batch-norm
statistics, dropout rates and types, random-seed states) are assigned from
freshly built, never traced models of the new trials (seeded as each trial
is), and its optimizer's from a fresh optimizer; nothing is traced or
compiled again, and no session is cleared. Tracing (about 1-2 s per model
on 2 CPU cores, more than a whole trial's training on `digits`) is paid once
per search instead of once per trial. Trials whose other settings differ
(learning rate, activation, the pack's size, compile settings) get a model
of their own, and the previous one is freed (`tuning.memory`). The default
search (`tuning.search`, `cnnzoo tune`) runs through this tuner, with the
pack size `auto_pack` picks: one trial per core on a CPU running each op on
one thread, several small trials on a GPU for long searches, 1 otherwise.

Equivalence (tested in `tests/test_packed.py`): tower k of a packed run
ends with the same weights and metrics as trial k trained alone with the
same seed, in float32, up to floating-point reassociation (the test allows
1e-5 relative on the weights after two epochs; on this CPU they agree
bit for bit); the same holds for trials trained by a reused model. Both
take their batches from `cnnzoo.input_pipeline`, whose
order depends only on the search's seed. Trials whose other
hyperparameters differ (learning rate, activation, Hyperband's epochs) are
packed only with trials that share them; a trial alone in its group trains
unpacked.

Where packing is not equivalent, and not used (`unpackable` says why; such a
group's trials train one at a time):

- `mixed_float16` shares one dynamic loss scale between the towers (a
  tower that overflows skips every tower's step); float32 and bfloat16
  need no loss scale.
- optimizers with a *global* gradient norm clip couple the towers.
- towers compiled differently (another loss, metric, optimizer setting or
  learning rate), which a `build(hp)` can do from a dropout value alone:
  the packed model has one optimizer.
- more than one execution per trial (refused when the tuner is made).

No grouped convolutions: they measured 6x to 19x slower than separate
convolutions on this CPU, so towers stay separate subgraphs.
"""

import functools
import math
import os
import time
import traceback

import keras
import keras_tuner as kt
from keras_tuner.src.engine import tuner_utils

from cnnzoo import _atomic
from cnnzoo import _validation as v
from cnnzoo.runtime import prepare_training, seed_trial
from tuning import tuners
from tuning.driver import MAX_PACK

# Hyperparameters that may differ inside a pack: the dropout knobs.
PACKABLE = ("dropout",)
# Keras Tuner bookkeeping that does not change the model being trained.
_BOOKKEEPING = ("tuner/trial_id", "tuner/bracket", "tuner/round")


def pack_key(values):
    """What must be equal for two trials to share a pack: every value but dropout's."""
    return tuple(sorted((k, repr(val)) for k, val in values.items()
                        if not any(p in k for p in PACKABLE) and k not in _BOOKKEEPING))


def group_trials(trials):
    """Splits trials into groups that can be packed together (order kept)."""
    groups = {}
    for trial in trials:
        groups.setdefault(pack_key(trial.hyperparameters.values), []).append(trial)
    return list(groups.values())


# Keras weights each output's own loss by the batch's *static* size, unknown
# (None) under tf.data, so a tower's logged `tower_k_loss` is an unweighted mean
# over batches, while a single model's `loss` weighs each batch by its size.
# Each tower therefore also tracks its loss as a metric weighted per example,
# and that is what it reports as its `loss`.
WEIGHTED_LOSS = "weighted_loss"


def tower_metric(name, output):
    """The packed model's log key of a tower's metric (`None`: a single model's key).

    `val_accuracy` -> `val_tower_0_accuracy`; `loss` -> `tower_0_weighted_loss`.
    """
    if output is None:
        return name
    prefix, base = ("val_", name[4:]) if name.startswith("val_") else ("", name)
    if base == "loss":
        base = WEIGHTED_LOSS
    return f"{prefix}{output}_{base}"


def _per_example_loss(loss):
    """The unreduced form of a compiled loss, for a per-example weighted mean."""
    if isinstance(loss, keras.losses.Loss):
        return loss.call
    return keras.losses.get(loss)


class _History:
    """A `keras.callbacks.History` look-alike for one tower."""

    def __init__(self, history, epoch):
        self.history = history
        self.epoch = epoch


class _TowerCallback(keras.callbacks.Callback):
    """Per tower: best-epoch checkpoints and the non-finite-loss check.

    Keras Tuner saves a trial's weights to its checkpoint file at every
    epoch that improves (`SaveBestEpoch`: 40-60 ms an epoch for `simple_cnn`
    on 2 CPU cores, a sixth of a digits trial). Here each tower's weights are
    copied in memory at the tower's own best epoch and written to its trial's
    checkpoint once, when training ends: the same file. A trial killed before
    then runs again on resume anyway. A tower whose loss stops being finite is
    marked failed; the others go on (their gradients do not depend on it).
    """

    def __init__(self, towers, outputs, objective, paths):
        super().__init__()
        self.towers = towers
        self.outputs = outputs
        self.objective = objective
        self.paths = paths
        self.best = [None] * len(towers)
        self.best_weights = [None] * len(towers)
        self.reasons = [None] * len(towers)

    def on_train_end(self, logs=None):
        for k, tower in enumerate(self.towers):
            if self.reasons[k] or self.best_weights[k] is None or not self.paths[k]:
                continue
            # The tower is reset from a fresh model before it trains again.
            tower.set_weights(self.best_weights[k])
            tower.save_weights(self.paths[k])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for k, (tower, output) in enumerate(zip(self.towers, self.outputs)):
            if self.reasons[k]:
                continue
            for key in ("loss", "val_loss"):
                value = logs.get(tower_metric(key, output))
                if value is not None and not math.isfinite(float(value)):
                    self.reasons[k] = f"{key} became {float(value)} at epoch {epoch + 1}"
                    break
            if self.reasons[k]:
                continue
            value = logs.get(tower_metric(self.objective.name, output))
            if value is None:
                continue
            if self.best[k] is None or self.objective.better_than(value, self.best[k]):
                self.best[k] = value
                if self.paths[k]:
                    self.best_weights[k] = tower.get_weights()
        if all(self.reasons):
            self.model.stop_training = True


class _NoWindow:
    """Per-trial memory windows: here the compiled model's lifetime is the window."""

    def begin(self):
        pass

    def end(self):
        pass


class _Warm:
    """A compiled model kept between packs, with what it was built for.

    Attributes:
        key: the hypermodel's `reuse_key` of its trials, and the pack size.
        model: the compiled model that trains (the packed model, or the
            one tower).
        towers: the towers' models.
        outputs: the towers' output names (`[None]` for one tower).
        signature: the towers' compile settings but the learning rate.
    """

    def __init__(self, key, model, towers, outputs, signature):
        self.key = key
        self.model = model
        self.towers = towers
        self.outputs = outputs
        self.signature = signature


# Training steps per call of the compiled function (Keras's `steps_per_execution`).
MAX_STEPS_PER_EXECUTION = 16


def steps_per_execution(steps_per_epoch, limit=MAX_STEPS_PER_EXECUTION):
    """The largest divisor of `steps_per_epoch` up to `limit` (1 when unknown).

    Keras runs `steps_per_execution` steps per call, also past an epoch's
    end when the epoch is not a whole number of calls (from an endless
    dataset such as `cnnzoo.input_pipeline`'s, that would train more steps
    per epoch): a divisor keeps every epoch exactly `steps_per_epoch` steps.
    """
    if not steps_per_epoch:
        return 1
    return max(d for d in range(1, limit + 1) if steps_per_epoch % d == 0)


def compile_signature(model):
    """What must be equal for one compiled model to train another's trial.

    The compile configuration (loss, metrics, optimizer class and settings)
    but the learning rate, which is a variable of the optimizer.
    """
    import json

    config = dict(model.get_compile_config() or {})
    optimizer = config.get("optimizer")
    if isinstance(optimizer, dict):
        inner = dict(optimizer.get("config") or {})
        inner.pop("learning_rate", None)
        inner.pop("name", None)
        config["optimizer"] = {**optimizer, "config": inner}
    return json.dumps(config, sort_keys=True, default=repr) + f"|jit={model.jit_compile}"


def unpackable(towers):
    """Why these compiled towers cannot train as one packed model (`None`: they can)."""
    first = towers[0]
    optimizer = first.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return "a loss-scale optimizer (mixed_float16) would share one loss scale"
    if getattr(optimizer, "global_clipnorm", None):
        return "a global gradient norm clip would couple the towers"
    if (first.get_compile_config() or {}).get("loss_weights") is not None:
        return "loss weights would not carry over to the packed model's losses"
    signature = compile_signature(first)
    rate = optimizer.get_config().get("learning_rate")
    for tower in towers[1:]:
        if compile_signature(tower) != signature:
            return "the towers are compiled differently"
        if tower.optimizer.get_config().get("learning_rate") != rate:
            return "the towers have different learning rates"
    return None


class _Unpackable(Exception):
    """A group whose towers cannot be packed (see `unpackable`)."""


def _same_shapes(targets, sources):
    return len(targets) == len(sources) and all(
        tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype
        for a, b in zip(targets, sources))


def reset_from(warm, fresh):
    """Makes a warm model start as the freshly built `fresh` towers would.

    Every variable of every tower (weights, batch-norm statistics, dropout
    rates and types, random-seed states) is assigned from its fresh twin,
    and the optimizer's (step count, learning rate, slots) from a fresh
    optimizer of the first tower's configuration built over the warm
    model's weights. Returns `False`, changing nothing, when the structures
    differ.
    """
    pairs = list(zip(warm.towers, fresh))
    if len(fresh) != len(warm.towers) or not all(
            _same_shapes(t.variables, f.variables) for t, f in pairs):
        return False
    optimizer = warm.model.optimizer
    template = fresh[0].optimizer
    template.build(warm.model.trainable_variables)
    if not _same_shapes(optimizer.variables, template.variables):
        return False
    for target, source in pairs:
        for a, b in zip(target.variables, source.variables):
            a.assign(b)
    for a, b in zip(optimizer.variables, template.variables):
        a.assign(b)
    return True


# What `search` may pass on to the packed tuner's training; it trains with its
# own input pipeline (`cnnzoo.input_pipeline`), which always shuffles.
FIT_KEYWORDS = ("x", "y", "epochs", "batch_size", "validation_data", "verbose", "shuffle")


def _split_data(fit_args, fit_kwargs):
    """`(x, y, other keyword arguments)` from `search`'s arguments."""
    kwargs = dict(fit_kwargs)
    args = list(fit_args)
    x = args.pop(0) if args else kwargs.pop("x", None)
    y = args.pop(0) if args else kwargs.pop("y", None)
    if args:
        v.fail("Expected the training data as (x, y) and keyword arguments.",
               "fit_args", f"{len(fit_args)} positional arguments")
    return x, y, kwargs


def _check_fit_arguments(fit_args, fit_kwargs):
    """Refuses, before any trial, what the packed tuner's training would drop."""
    use = ("use a tuning.tuners.zoo_tuner_class tuner for the others, which trains each "
           "trial with Keras Tuner's own run_trial")
    for name, value in fit_kwargs.items():
        if name not in FIT_KEYWORDS and not (name == "callbacks" and not value):
            v.fail(f"Expected only the arguments {list(FIT_KEYWORDS)} to search() with "
                   f"packed trials; {use}.", name, value)
    x, y, _ = _split_data(fit_args, fit_kwargs)
    if y is None or not hasattr(x, "shape") or not hasattr(y, "shape"):
        v.fail(f"Expected the training data as two arrays, x and y, with packed trials (not "
               f"a dataset or a generator); {use}.", "x", type(x).__name__)
    validation = fit_kwargs.get("validation_data")
    if validation is not None and not (isinstance(validation, (tuple, list))
                                       and len(validation) == 2):
        v.fail(f"Expected `validation_data` as (x, y) arrays with packed trials; {use}.",
               "validation_data", type(validation).__name__)


def _defined_by(obj, name):
    """The class in `obj`'s MRO whose body defines `name` (`None`: none does)."""
    return next((cls for cls in type(obj).__mro__ if name in vars(cls)), None)


def own_training(hypermodel):
    """Why `hypermodel`'s trials must train through Keras Tuner's `run_trial` (`None`: no need).

    The packed tuner trains with its own loop (`fit` on `cnnzoo.input_pipeline`),
    never calling `hypermodel.fit`: a hypermodel with a `fit` of its own (a
    searched batch size, callbacks, other data) trains one trial at a time,
    as Keras Tuner would train it.
    """
    from tuning.hypermodel import ZooHyperModel

    if _defined_by(hypermodel, "fit") not in (None, kt.HyperModel, ZooHyperModel):
        return "the hypermodel has a fit() of its own"
    return None


def unpackable_hypermodel(hypermodel):
    """Why `hypermodel`'s trials may not share compiled models (`None`: they may).

    A kept compiled model trains the next trials whose `reuse_key` equals
    its own, so the key must describe what `build` compiles: a loss, say,
    can differ between trials in ways no compiled model shows (a closure over
    a searched value). That holds for `ZooHyperModel`, and for a subclass
    that defines `reuse_key` along with its own `build`; not for a subclass
    that changes `build` alone. A hypermodel without a `reuse_key` (a plain
    `build(hp)`) keeps no model; its packs are checked tower by tower
    (`unpackable`), which sees the compile configuration but not what a
    closure computes.
    """
    reason = own_training(hypermodel)
    if reason:
        return reason
    key_owner = _defined_by(hypermodel, "reuse_key")
    if key_owner is None:
        return None
    for name in ("build", "build_model"):
        owner = _defined_by(hypermodel, name)
        if owner is not None and not issubclass(key_owner, owner):
            return f"the hypermodel's {name}() is not the one its reuse_key() describes"
    return None


class PackedTunerMixin:
    """Trains up to `pack` trials at once; mixed into a `ZooTunerMixin` tuner.

    Args:
        pack: how many trials to train side by side (1: one at a time,
            through the same seeded input pipeline).
        **kwargs: passed to the tuner (see `tuning.tuners.ZooTunerMixin`).
    """

    def __init__(self, oracle, hypermodel=None, *, pack=4, reuse=True, **kwargs):
        self.pack = v.check_int("pack", pack, low=1, high=64)
        self.reuse = v.check_bool("reuse", reuse)
        super().__init__(oracle, hypermodel, **kwargs)
        if self.hypermodel is not None:
            reason = own_training(self.hypermodel)
            if reason is None and self.pack > 1:
                reason = unpackable_hypermodel(self.hypermodel)
            if reason:
                v.fail(f"Expected a hypermodel whose trials this tuner can train ({reason}); "
                       f"use a tuning.tuners.zoo_tuner_class tuner, which trains each trial "
                       f"with Keras Tuner's own run_trial.", "hypermodel",
                       type(self.hypermodel).__name__)
        if self.pack > 1 and self.executions_per_trial != 1:
            v.fail("Expected one execution per trial with packed trials.",
                   "executions_per_trial", self.executions_per_trial)
        # One memory window per compiled model, not per trial: it opens as a
        # model is built and closes (clearing the session) as it is dropped.
        self.model_memory = self.memory
        self.memory = _NoWindow()
        self._window_open = False
        self._warm = None
        # How many compiled models this tuner built (each one traced once).
        self.models_built = 0

    # -- taking K trials from the oracle --------------------------------------

    def _pack_ids(self):
        return [self.tuner_id] + [f"{self.tuner_id}_pack{k}" for k in range(1, self.pack)]

    def search_trials(self, *fit_args, **fit_kwargs):
        """Takes up to `pack` trials at a time from the oracle and trains them.

        `ZooTunerMixin.search` calls it (on a worker, after the chief answers).
        """
        _check_fit_arguments(fit_args, fit_kwargs)
        if "verbose" in fit_kwargs:
            self.oracle.verbose = fit_kwargs.get("verbose")
        self.on_search_begin()
        # Every ID must hear STOPPED, or a distributed chief waits for it forever.
        active = self._pack_ids()
        while active:
            self.pre_create_trial()
            trials, still_active = [], []
            for tuner_id in active:
                trial = self.oracle.create_trial(tuner_id)
                if trial.status == kt.engine.trial.TrialStatus.STOPPED:
                    continue
                still_active.append(tuner_id)
                if trial.status == kt.engine.trial.TrialStatus.IDLE:
                    # The oracle waits for running trials (maybe these).
                    continue
                trials.append(trial)
            active = still_active
            if not trials:
                if active:
                    time.sleep(0.2)
                continue
            try:
                for trial in trials:
                    self.on_trial_begin(trial)
                outcomes = self._run_pack(trials, *fit_args, **fit_kwargs)
                # A status is set only as its trial ends: the oracle ranks every
                # COMPLETED trial, so none may look completed before it is scored.
                for trial in trials:
                    trial.status, trial.message = outcomes[trial.trial_id]
                    self.on_trial_end(trial)
            except BaseException:
                self.release_model()
                raise
        self.release_model()
        self.on_search_end()

    def release_model(self):
        """Drops the compiled model kept between packs and frees what it held."""
        self._warm = None
        if self._window_open:
            self._window_open = False
            self.model_memory.end()

    # -- training a pack -----------------------------------------------------

    def _run_pack(self, trials, *fit_args, **fit_kwargs):
        """Trains the trials; returns `trial_id -> (status, message)`."""
        outcomes = {}
        groups = group_trials(trials)
        while groups:
            group = groups.pop(0)
            start = time.perf_counter()
            try:
                results = self._train_group(group, *fit_args, **fit_kwargs)
            except _Unpackable:
                groups[:0] = [[trial] for trial in group]
                continue
            except Exception as error:  # a failed build or fit fails the group's trials
                # The kept model may hold half a step: start the next one afresh.
                self.release_model()
                if isinstance(error, kt.errors.FatalError):
                    raise
                status = "FAILED" if isinstance(error, kt.errors.FailedTrialError) else "INVALID"
                for trial in group:
                    outcomes[trial.trial_id] = (status, traceback.format_exc())
                continue
            seconds = (time.perf_counter() - start) / len(group)
            for trial, (history, reason) in zip(group, results):
                if reason:
                    outcomes[trial.trial_id] = ("FAILED", f"FailedTrialError: {reason}")
                    continue
                metrics = self.summarize([history], seconds)
                metrics["pack_size"] = float(len(group))
                self.reported[trial.trial_id] = metrics
                tuner_utils.validate_trial_results(metrics, self.oracle.objective,
                                                   "PackedTuner")
                self.oracle.update_trial(
                    trial.trial_id,
                    tuner_utils.convert_to_metrics_dict(metrics, self.oracle.objective),
                    step=tuner_utils.get_best_step(metrics, self.oracle.objective))
                outcomes[trial.trial_id] = ("COMPLETED", None)
        return outcomes

    def _fit_settings(self, trial, fit_args, fit_kwargs):
        x, y, kwargs = _split_data(fit_args, fit_kwargs)
        hp = trial.hyperparameters.values
        if "tuner/epochs" in hp:  # Hyperband
            kwargs["epochs"] = hp["tuner/epochs"]
            kwargs["initial_epoch"] = hp["tuner/initial_epoch"]
        return x, y, kwargs

    def _train_group(self, group, *fit_args, **fit_kwargs):
        """Trains a group; returns one `(history, failure reason)` per trial."""
        from cnnzoo import input_pipeline

        x, y, kwargs = self._fit_settings(group[0], fit_args, fit_kwargs)
        batch_size = kwargs.pop("batch_size", 32)
        validation = kwargs.pop("validation_data", None)
        kwargs.pop("callbacks", None)
        kwargs.pop("shuffle", None)
        warm = self._warm_model(group)
        outputs = warm.outputs if len(group) > 1 else None
        train = input_pipeline.train_data(x, y, batch_size=batch_size, seed=self.seed,
                                          outputs=outputs)
        if warm.model.train_function is None:
            # Set before the first trace only: one call of the compiled function
            # then runs that many steps (fewer Python round trips per epoch).
            warm.model.steps_per_execution = steps_per_execution(
                train.get("steps_per_epoch") or len(train["x"]))
            # Its optimizer, loss and metrics built first, the step is traced
            # once, not twice.
            prepare_training(warm.model, x, y if outputs is None
                             else {name: y for name in outputs})
        if validation is not None:
            kwargs["validation_data"] = input_pipeline.eval_data(
                *validation, batch_size=max(batch_size, 256), outputs=outputs)["x"]
        paths = [self._get_checkpoint_fname(t.trial_id) for t in group]
        callback = _TowerCallback(warm.towers, warm.outputs, self.oracle.objective, paths)
        history = warm.model.fit(**train, callbacks=[callback], **kwargs)
        for trial, tower in zip(group, warm.towers):
            self._save_build_config(trial, tower)
        if self._warm is None:  # not kept: free it now
            self.release_model()
        if outputs is None:
            logs = dict(history.history)
            return [(_History(logs, list(history.epoch)), callback.reasons[0])]
        results = []
        for tower_out, reason in zip(outputs, callback.reasons):
            logs = {}
            for key in history.history:
                for prefix in (f"val_{tower_out}_", f"{tower_out}_"):
                    if not key.startswith(prefix):
                        continue
                    base = key[len(prefix):]
                    if base == "loss":
                        continue  # the unweighted one (see WEIGHTED_LOSS)
                    base = "loss" if base == WEIGHTED_LOSS else base
                    name = ("val_" if prefix.startswith("val_") else "") + base
                    logs[name] = list(history.history[key])
            results.append((_History(logs, list(history.epoch)), reason))
        return results

    def _reuse_key(self, group):
        """The key a kept model must have to train this group (`None`: never kept)."""
        reuse_key = getattr(self.hypermodel, "reuse_key", None)
        if (not self.reuse or reuse_key is None or self.distribution_strategy is not None
                or unpackable_hypermodel(self.hypermodel)):
            return None
        keys = {reuse_key(t.hyperparameters.values) for t in group}
        if len(keys) != 1 or None in keys:
            return None
        return keys.pop(), len(group)

    def _build_tower(self, trial):
        # Seeded as the unpacked trial is, so weights and dropout seeds match.
        seed_trial(self.trial_seed(trial))
        # Keras Tuner's `_try_build` without its `clear_session` (which the
        # memory window does once per compiled model, not per tower).
        model = self._build_hypermodel(trial.hyperparameters)
        if not isinstance(model, keras.Model):
            raise kt.errors.FatalTypeError(
                f"Expected the model-building function, or HyperModel.build() to return a "
                f"valid Keras Model instance. Received: {model} of type {type(model)}.")
        if self.max_model_size and model.count_params() > self.max_model_size:
            raise kt.errors.FailedTrialError(
                f"Oversized model: {model.count_params()} parameters. Skip model.")
        return model

    def train_again(self, trial, x, y, *, epochs, batch_size):
        """A model of `trial` trained from scratch as the search trained it, for `epochs`.

        The trial's seed and the search's seeded batches: up to the same
        epoch, the same weights as the trial's (`tests/test_packed.py` shows
        a tower trains as its trial alone would), where the trial started
        from scratch (Hyperband's continued trials do not).
        """
        from cnnzoo import input_pipeline

        model = self._build_tower(trial)
        prepare_training(model, x, y)
        model.fit(**input_pipeline.train_data(x, y, batch_size=batch_size, seed=self.seed),
                  epochs=epochs, verbose=0)
        return model

    def _warm_model(self, group):
        """The compiled model for a group, started as its trials' fresh models would be.

        Trials whose hypermodel says they can share a model (the same
        `reuse_key`: only their dropout differs, and dropout is held in
        variables) and whose compile settings match reuse the model the last
        group trained: its variables are reset from freshly built (never
        traced) models, so nothing is traced or compiled again. Otherwise a
        model is built and compiled for the group.
        """
        key = self._reuse_key(group)
        if self._warm is None or key is None or self._warm.key != key:
            self.release_model()
        if not self._window_open:
            self.model_memory.begin()
            self._window_open = True
        fresh = [self._build_tower(trial) for trial in group]
        reason = unpackable(fresh) if len(fresh) > 1 else None
        if reason:
            raise _Unpackable(reason)
        # `unpackable` has checked that every tower shares the first's signature.
        signature = compile_signature(fresh[0])
        warm = self._warm
        if warm is not None:
            if warm.signature == signature and reset_from(warm, fresh):
                return warm
            self._warm = None  # the window stays open: the fresh towers are in it
        if len(group) == 1:
            model, outputs = fresh[0], [None]
        else:
            outputs = [f"tower_{k}" for k in range(len(group))]
            model = self._pack(fresh, outputs)
        self.models_built += 1
        warm = _Warm(key, model, fresh, outputs, signature)
        if key is not None:
            self._warm = warm
        return warm

    def _save_build_config(self, trial, model):
        # What Keras Tuner saves after each fit, so that `load_model` and
        # Hyperband's continued trials can rebuild this trial's model.
        from keras_tuner.src.backend import config

        if config.multi_backend():
            _atomic.write_json(self._get_build_config_fname(trial.trial_id),
                               model.get_build_config())

    def _pack(self, towers, outputs):
        """K compiled models -> one model with K outputs and the sum of their losses."""
        first = towers[0]
        for tower, name in zip(towers, outputs):
            tower.name = name
        inputs = keras.Input(shape=first.input_shape[1:], name="images",
                             dtype=first.inputs[0].dtype)
        packed = keras.Model(inputs, [t(inputs) for t in towers], name="packed_trials")
        # Compiled as the towers are: a fresh optimizer of the same class and
        # configuration (one slot set per weight, so per tower), each tower's loss
        # and metrics on its own output.
        optimizer = first.optimizer.__class__.from_config(first.optimizer.get_config())
        metrics = (first.get_compile_config() or {}).get("metrics") or ["accuracy"]
        loss_fn = _per_example_loss(first.loss)
        packed.compile(
            optimizer=optimizer,
            loss={name: first.loss for name in outputs},
            metrics={name: list(metrics) + [keras.metrics.MeanMetricWrapper(
                loss_fn, name=WEIGHTED_LOSS)] for name in outputs},
            jit_compile=first.jit_compile,
        )
        return packed


# `pack="auto"` (`auto_pack`): on an accelerator, and only for a search long
# enough to repay compiling the packed model (AUTO_PACK_MIN_STEPS trial-steps),
# up to AUTO_PACK trials side by side while the pack's forward work per step
# stays within AUTO_PACK_FLOPS; on a CPU, one trial per core where each op
# runs on one thread (AUTO_PACK_CPU_MIN_STEPS), else one at a time.
AUTO_PACK = 8
AUTO_PACK_FLOPS = 16e9
# Measured on one H200 with JAX (2026-11-30; `benchmarks/RESULTS.md`), the
# default search's model (simple_cnn on digits, 40 steps per epoch), 16 trials
# at 5 and at 20 epochs: packing 8 trials cut the time per trial-epoch from 72
# to 50 ms but added 18.6 s of fixed cost per search (most likely compiling
# the 8-tower model's functions: on a CPU compiling took twice as long packed),
# so it breaks even at about 34,000 trial-steps (16 trials x 53 epochs of
# digits). The default search is 4,000.
AUTO_PACK_MIN_STEPS = 50_000
# Measured on 2 cores of an AMD EPYC with TensorFlow (2026-11-30), the same
# model with one intra-op thread (`cnnzoo.runtime.resolve_threads`), 12 trials
# at 2 and at 10 epochs: 2 trials packed cut the time per trial-epoch from 92
# to 63 ms at no higher fixed cost (the towers' ops run side by side, one per
# core), and 3 packed from 118 to 72 ms at 2.1 s more, breaking even at about
# 1,800 trial-steps. Whole default searches (10 trials x 10 epochs, fresh
# processes, alternating) ran 1.04x-1.35x faster with 2 packed (median 1.10,
# faster in 8 of 8 pairs) and reached the same best objective in each. Those
# searches ran in float32 (a bug since fixed: Keras's clear_session reset the
# precision). In mixed bfloat16, once a trial's seed no longer cleared
# TensorFlow's compiled functions (`cnnzoo.runtime.seed_trial`), 2 packed was
# still faster in 7 pairs of 7 (1.05x-1.48x, median 1.12, the same best in
# each), and the benchmark's default search ran at 3.4-4.5x plain Keras Tuner
# with 2 packed and 3.4-4.1x one at a time over two runs
# (`benchmarks/RESULTS_search_full.md`).
AUTO_PACK_CPU_MIN_STEPS = 2_000


def cpu_cores():
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_pack(*, accelerator, tuner, step_flops, max_trials=None, search_steps=None,
              distribution="none", threads=None, cores=None):
    """The pack size that `pack="auto"` picks, and why.

    Packing trains K trials in one model with the same results as one at a
    time (see the module docstring). It saves time per step where one trial
    leaves the hardware idle, and costs a larger fixed cost per search
    (compiling the K-tower model, most likely). So:

    - 1 for Bayesian optimization, which proposes each trial from the
      results of all earlier ones (trials taken K at a time would be
      proposed knowing fewer), and 1 with `distribution="mirrored"`, where
      each trial already spans every device;
    - on a CPU where each op runs on one thread (`threads=1`, which
      `cnnzoo.runtime` picks for tiny models on TensorFlow), one trial per
      core for a search of at least `AUTO_PACK_CPU_MIN_STEPS` training steps
      over all its trials (a search of unknown length, as Hyperband's, is
      not packed): the towers' ops run side by side on the cores
      that one trial leaves idle. On 2 cores the default search ran a
      median 1.12x faster with 2 trials packed (see
      `AUTO_PACK_CPU_MIN_STEPS`). The pack's forward FLOPs per step stay
      within `AUTO_PACK_FLOPS` here too (one thread asked for a large
      model would otherwise hold a copy of it per core);
    - on a CPU where ops use every core (TensorFlow's default threads, or
      another backend), 1: the towers' kernels would run one after another;
    - on an accelerator, 1 for a search of fewer than `AUTO_PACK_MIN_STEPS`
      training steps over all its trials (or of unknown length, as with
      Hyperband): on an H200 a search of 16 trials x 5 epochs ran 2.5-2.6x
      faster one trial at a time than 8 trials packed, and packing broke even
      only at about 34,000 trial-steps (see `AUTO_PACK_MIN_STEPS`);
    - for a longer search on an accelerator, as many trials as keep the
      pack's forward FLOPs per step within `AUTO_PACK_FLOPS`, at most
      `AUTO_PACK`: a small model's step is microseconds of work there,
      mostly launch overhead, which the towers share.

    With `max_trials` known, K is evened out over the packs (10 trials: two
    packs of 5, not 8 and 2, which would compile a second model).

    Args:
        accelerator: whether the backend has a GPU or TPU.
        tuner: `"random"`, `"bayesian"` or `"hyperband"`.
        step_flops: forward FLOPs of one training step of one trial
            (`cnnzoo._flops.forward_flops` per example times the batch size),
            or `None` where unknown.
        max_trials: the search's trials (`None` for Hyperband).
        search_steps: training steps of the whole search, summed over its
            trials (trials x epochs x steps per epoch), or `None` where
            unknown.
        distribution: `"none"` or `"mirrored"`.
        threads: TensorFlow's intra-op threads as `cnnzoo.runtime.configure`
            set them (`None`: the default, one per core).
        cores: the CPU cores to count on. Defaults to `cpu_cores()`.

    Returns:
        `(k, reason)`.
    """
    if distribution != "none":
        return 1, "each trial already spans every device"
    if tuner == "bayesian":
        return 1, "Bayesian optimization proposes each trial from every earlier result"
    if not accelerator:
        if threads != 1:
            return 1, "CPU: each op already runs on every core"
        cores = cpu_cores() if cores is None else cores
        if cores < 2:
            return 1, "CPU: one core"
        minimum, k = AUTO_PACK_CPU_MIN_STEPS, min(AUTO_PACK, cores)
        if step_flops is not None:  # threads asked for a large model: its memory
            k = int(min(k, AUTO_PACK_FLOPS // max(float(step_flops), 1.0)))
    else:
        if step_flops is None:
            return 1, "the model's size could not be read"
        minimum = AUTO_PACK_MIN_STEPS
        k = int(min(AUTO_PACK, AUTO_PACK_FLOPS // max(float(step_flops), 1.0)))
    if search_steps is None or search_steps < minimum:
        steps = "of unknown length" if search_steps is None else f"of {search_steps:,} steps"
        return 1, (f"a search {steps} is too short to repay compiling a packed model "
                   f"(at least {minimum:,})")
    if k <= 1:
        return 1, f"one trial's step ({step_flops / 1e9:.1f} GFLOP forward) is large enough"
    if max_trials:
        packs = math.ceil(max_trials / k)
        k = math.ceil(max_trials / packs)
        if k <= 1:
            return 1, "one trial"
    if accelerator:
        where = (f"accelerator: {k} trials of {step_flops / 1e6:.0f} MFLOP forward per step "
                 f"share each step")
    else:
        where = f"CPU with one thread per op and {cores} cores"
    return k, f"{where}, over {search_steps:,} training steps"


def packed_tuner_class(base, pack=4):
    """`base` (a Keras Tuner tuner class) with packing and `ZooTunerMixin` mixed in.

    `pack` is the default number of trials per pack.
    """
    # Checked before the cache, which would take 2.0 for 2.
    return _packed_tuner_class(base, v.check_int("pack", pack, low=1, high=MAX_PACK))


@functools.lru_cache(maxsize=None)
def _packed_tuner_class(base, pack):
    cls = type(f"Packed{base.__name__}", (PackedTunerMixin, tuners.ZooTunerMixin, base), {})
    init = cls.__init__

    def __init__(self, oracle, hypermodel=None, *, pack=pack, **kwargs):
        init(self, oracle, hypermodel, pack=pack, **kwargs)

    cls.__init__ = __init__
    return cls


class PackedTuner(PackedTunerMixin, tuners.ZooTunerMixin, kt.Tuner):
    """A Keras Tuner tuner that trains `pack` trials at once (any oracle).

    Args:
        oracle: a Keras Tuner oracle (e.g. from `tuning.tuners.make_oracle`;
            use `packed_tuner_class(keras_tuner.Hyperband)` for Hyperband,
            whose tuner continues trials from their checkpoints).
        hypermodel: a `keras_tuner.HyperModel` (usually a `ZooHyperModel`).
        pack: trials trained side by side. Defaults to 4.
        seed: the search's seed (trial seeds and the batch order).
        **kwargs: `directory`, `project_name`, `overwrite`, ... as for any
            Keras Tuner tuner.

    Example:

    >>> oracle = tuning.tuners.make_oracle("random", max_trials=8)
    >>> tuner = PackedTuner(oracle, ZooHyperModel("simple_cnn", input_shape=(8, 8, 1),
    ...                     num_classes=10), pack=4, directory="out")
    >>> tuner.search(x, y, validation_data=(x_val, y_val), epochs=5)
    """
