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
...), each holding one ongoing trial, which a restarted worker gets back.

Equivalence (tested in `tests/test_packed.py`): tower k of a packed run
ends with the same weights and metrics as trial k trained alone with the
same seed, in float32, up to floating-point reassociation (the test allows
1e-5 relative on the weights after two epochs; on this CPU they agree
bit for bit). Both take their batches from `cnnzoo.input_pipeline`, whose
order depends only on the search's seed. Trials whose other
hyperparameters differ (learning rate, activation, Hyperband's epochs) are
packed only with trials that share them; a trial alone in its group trains
unpacked.

Where packing is not equivalent, and not used:

- `mixed_float16` shares one dynamic loss scale between the towers (a
  tower that overflows skips every tower's step); float32 and bfloat16
  need no loss scale.
- optimizers with a *global* gradient norm clip couple the towers.
- more than one execution per trial.

No grouped convolutions: they measured 6x to 19x slower than separate
convolutions on this CPU, so towers stay separate subgraphs.
"""

import functools
import math
import time
import traceback

import keras
import keras_tuner as kt
from keras_tuner.src.engine import tuner_utils

from cnnzoo import _atomic
from cnnzoo import _validation as v
from tuning import tuners

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

    Keras Tuner saves a trial's weights at its best epoch (`SaveBestEpoch`);
    here each tower's weights are saved at the tower's own best epoch, into
    its trial's checkpoint file. A tower whose loss stops being finite is
    marked failed; the others go on (their gradients do not depend on it).
    """

    def __init__(self, towers, outputs, objective, paths):
        super().__init__()
        self.towers = towers
        self.outputs = outputs
        self.objective = objective
        self.paths = paths
        self.best = [None] * len(towers)
        self.reasons = [None] * len(towers)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for k, (tower, output) in enumerate(zip(self.towers, self.outputs)):
            if self.reasons[k]:
                continue
            for key in ("loss", "val_loss"):
                value = logs.get(tower_metric(key, output))
                if value is not None and not math.isfinite(float(value)):
                    self.reasons[k] = f"{key} became {float(value)} at epoch {epoch + 1}"
            if self.reasons[k]:
                continue
            value = logs.get(tower_metric(self.objective.name, output))
            if value is None:
                continue
            if self.best[k] is None or self.objective.better_than(value, self.best[k]):
                self.best[k] = value
                if self.paths[k]:
                    tower.save_weights(self.paths[k])
        if all(self.reasons):
            self.model.stop_training = True


class _PackMemory:
    """One memory window for a whole pack (see `tuning.memory.TrialMemory`).

    The tuner opens a window as each trial begins and closes it as each
    ends; the trials of a pack share one model, so the window opens with the
    first and closes (clearing the session once) with the last.
    """

    def __init__(self, memory, size):
        self.memory = memory
        self.size = size
        self.begun = 0
        self.ended = 0

    def begin(self):
        if self.begun == 0:
            self.memory.begin()
        self.begun += 1

    def end(self):
        self.ended += 1
        if self.ended == self.size:
            self.memory.end()

    def close(self):
        """Closes the window if the pack stopped before its last trial ended."""
        if self.begun and self.ended < self.size:
            self.ended = self.size
            self.memory.end()


class PackedTunerMixin:
    """Trains up to `pack` trials at once; mixed into a `ZooTunerMixin` tuner.

    Args:
        pack: how many trials to train side by side (1: one at a time,
            through the same seeded input pipeline).
        **kwargs: passed to the tuner (see `tuning.tuners.ZooTunerMixin`).
    """

    def __init__(self, oracle, hypermodel=None, *, pack=4, **kwargs):
        self.pack = v.check_int("pack", pack, low=1, high=64)
        super().__init__(oracle, hypermodel, **kwargs)
        if self.pack > 1 and self.executions_per_trial != 1:
            v.fail("Expected one execution per trial with packed trials.",
                   "executions_per_trial", self.executions_per_trial)

    # -- taking K trials from the oracle --------------------------------------

    def _pack_ids(self):
        return [self.tuner_id] + [f"{self.tuner_id}_pack{k}" for k in range(1, self.pack)]

    def search(self, *fit_args, **fit_kwargs):
        from tuning import distributed

        if distributed.current_role() == "chief":
            return super().search(*fit_args, **fit_kwargs)
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
            inner = getattr(self, "memory", None)
            pack_memory = _PackMemory(inner, len(trials)) if inner is not None else None
            if pack_memory is not None:
                self.memory = pack_memory
            try:
                for trial in trials:
                    self.on_trial_begin(trial)
                outcomes = self._run_pack(trials, *fit_args, **fit_kwargs)
                # A status is set only as its trial ends: the oracle ranks every
                # COMPLETED trial, so none may look completed before it is scored.
                for trial in trials:
                    trial.status, trial.message = outcomes[trial.trial_id]
                    self.on_trial_end(trial)
            finally:
                if pack_memory is not None:
                    self.memory = inner
                    pack_memory.close()
        self.on_search_end()

    # -- training a pack -----------------------------------------------------

    def _run_pack(self, trials, *fit_args, **fit_kwargs):
        """Trains the trials; returns `trial_id -> (status, message)`."""
        outcomes = {}
        for group in group_trials(trials):
            start = time.perf_counter()
            try:
                results = self._train_group(group, *fit_args, **fit_kwargs)
            except Exception as error:  # a failed build or fit fails the group's trials
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
                tuner_utils.validate_trial_results(metrics, self.oracle.objective,
                                                   "PackedTuner")
                self.oracle.update_trial(
                    trial.trial_id,
                    tuner_utils.convert_to_metrics_dict(metrics, self.oracle.objective),
                    step=tuner_utils.get_best_step(metrics, self.oracle.objective))
                outcomes[trial.trial_id] = ("COMPLETED", None)
        return outcomes

    def _fit_settings(self, trial, fit_args, fit_kwargs):
        kwargs = dict(fit_kwargs)
        args = list(fit_args)
        x = args.pop(0) if args else kwargs.pop("x")
        y = args.pop(0) if args else kwargs.pop("y")
        if args:
            v.fail("Expected the training data as (x, y) and keyword arguments.",
                   "fit_args", f"{len(fit_args)} positional arguments")
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
        towers = []
        for trial in group:
            # Seeded as the unpacked trial is, so weights and dropout seeds match.
            keras.utils.set_random_seed(self.trial_seed(trial))
            towers.append(self._try_build(trial.hyperparameters))
        paths = [self._get_checkpoint_fname(t.trial_id) for t in group]
        if len(group) == 1:
            return [self._train_alone(group[0], towers[0], paths[0], x, y, validation,
                                      batch_size, kwargs)]
        outputs = [f"tower_{k}" for k in range(len(group))]
        packed = self._pack(towers, outputs)
        train = input_pipeline.train_data(x, y, batch_size=batch_size, seed=self.seed,
                                          outputs=outputs)
        if validation is not None:
            kwargs["validation_data"] = input_pipeline.eval_data(
                *validation, batch_size=max(batch_size, 256), outputs=outputs)["x"]
        callback = _TowerCallback(towers, outputs, self.oracle.objective, paths)
        history = packed.fit(**train, callbacks=[callback], **kwargs)
        for trial, tower in zip(group, towers):
            self._save_build_config(trial, tower)
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

    def _train_alone(self, trial, model, path, x, y, validation, batch_size, kwargs):
        from cnnzoo import input_pipeline

        kwargs = dict(kwargs)
        train = input_pipeline.train_data(x, y, batch_size=batch_size, seed=self.seed)
        if validation is not None:
            kwargs["validation_data"] = input_pipeline.eval_data(
                *validation, batch_size=max(batch_size, 256))["x"]
        callback = _TowerCallback([model], [None], self.oracle.objective, [path])
        history = model.fit(**train, callbacks=[callback], **kwargs)
        self._save_build_config(trial, model)
        return _History(dict(history.history), list(history.epoch)), callback.reasons[0]

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


def packed_tuner_class(base, pack=4):
    """`base` (a Keras Tuner tuner class) with packing and `ZooTunerMixin` mixed in.

    `pack` is the default number of trials per pack.
    """
    # Checked before the cache, which would take 2.0 for 2.
    return _packed_tuner_class(base, v.check_int("pack", pack, low=1, high=64))


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
