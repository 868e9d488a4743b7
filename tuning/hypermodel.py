"""`ZooHyperModel`: any zoo model, its dropout rates declared as Keras Tuner hyperparameters.

The search space is declared in `build(hp)`, next to where each value is
used, with stable names and explicit defaults (Keras Tuner's own
applications do the same). Every hyperparameter argument takes one of:

- `None`: the family's default (searched for the dropout knobs; fixed, at
  the recipe's value, for the learning rate, the weight decay and the label
  smoothing, and at the model's for the activation);
- a number or a string: that value, fixed (not declared, not searched);
- a tuple `(low, high)` or `(low, high, step)`: a `hp.Float` range (log
  sampling for the learning rate, and for the weight decay above 0);
- a list: a `hp.Choice` among its values;
- `True` (learning rate, weight decay, label smoothing, activation): a
  default range or choice (`LEARNING_RATE_RANGE`, `WEIGHT_DECAY_CHOICES`,
  `LABEL_SMOOTHING_CHOICES`, `ACTIVATION_CHOICES`).

Hyperparameter names: `dropout_rate` (head), `block_dropout_rate` (shared
by every stage) or `block_dropout_rate_1` ... `block_dropout_rate_N` (one per
stage, with `per_stage=True`), `dropout_type`, `learning_rate`,
`weight_decay`, `label_smoothing`, `activation`.

The rest of the training recipe (`cnnzoo.recipe.Recipe`: the optimizer,
schedule, warm-up, clipping, augmentation) is fixed for a search: every
trial compiles with it (`cnnzoo.recipe.optim.compile_with`).

Weight decay and label smoothing are compiled into the training step (Keras
optimizers and losses hold them as Python numbers), so trials with other
values cannot share a compiled model (`variable_hyperparameters`,
`tuning.reuse`); their `True` is a short list of values rather than a
range, so that trials that drew the same value still share one.
"""

import dataclasses
import math
import numbers

from cnnzoo import _validation as v
from cnnzoo._lazy import keras
from cnnzoo.runtime import prepare_training

try:  # keras_tuner imports Keras (and TensorFlow on that backend): seconds.
    import keras_tuner as kt

    _HyperModelBase = kt.HyperModel
except ImportError:  # pragma: no cover - keras-tuner is a declared dependency
    kt = None
    _HyperModelBase = object

DROPOUT_TYPES = ("standard", "spatial")
# Searched when `learning_rate=True`.
LEARNING_RATE_RANGE = (1e-4, 1e-2)
# Searched when `weight_decay=True` / `label_smoothing=True`: choices, not ranges (see above).
WEIGHT_DECAY_CHOICES = [0.0, 1e-4, 1e-3, 1e-2, 5e-2]
LABEL_SMOOTHING_CHOICES = [0.0, 0.05, 0.1, 0.2]
# The searched knobs besides the dropout rates, in `declare`'s order.
OTHER_KNOBS = ("dropout_type", "learning_rate", "weight_decay", "label_smoothing",
               "activation")
ACTIVATION_CHOICES = ["relu", "leaky_relu", "gelu"]


class ZooHyperModel(_HyperModelBase):
    """A Keras Tuner `HyperModel` that builds a zoo model with searched dropout.

    The model takes raw images (pixels 0-255; it resizes and rescales inside,
    see `cnnzoo.pipeline.build_classifier`), ends in a float32 softmax named
    `probabilities`, and is compiled with the training recipe's optimizer,
    schedule and loss (`recipe`; Adam and sparse categorical cross-entropy
    by default) and accuracy. `fit` records a trial whose loss becomes NaN
    or infinite as failed (`keras_tuner.errors.FailedTrialError`) with its
    reason, so any Keras Tuner tuner goes on with the next trial.

    Args:
        model_name: a name from `cnnzoo.list_models()`.
        input_shape: `(height, width, channels)` of the raw images.
        num_classes: number of classes.
        dropout_rate: the head rate. Defaults to the family's range
            (`model_info(model_name)["search_space"]`, declared where the
            family registers) with the paper's rate as the default value.
        block_dropout_rate: the rate inside the convolutional blocks.
            Defaults to the family's range with the paper's rate as default.
        per_stage: declare one block rate per stage instead of one shared
            rate. Defaults to `False`.
        dropout_type: `"standard"` or `"spatial"` block dropout. Defaults to
            a choice between the two, `"standard"` first.
        learning_rate: the optimizer's learning rate (a schedule's peak).
            Defaults to the recipe's, fixed (1e-3 for Adam); `True` searches
            `LEARNING_RATE_RANGE` on a log scale.
        weight_decay: the optimizer's decoupled weight decay. Defaults to
            the recipe's, fixed (0); `True` chooses among
            `WEIGHT_DECAY_CHOICES`.
        label_smoothing: the loss's label smoothing, in [0, 1). Defaults to
            the recipe's, fixed (0); `True` chooses among
            `LABEL_SMOOTHING_CHOICES`.
        activation: the hidden activation. Defaults to the model's own,
            fixed; `True` searches `ACTIVATION_CHOICES`.
        input_size: `(height, width)` the zoo model sees (the raw images are
            resized inside the model). Defaults to the raw size.
        implementation: `"keras"` or `"primitive"` ReLU and Dropout layers.
        tunable_dropout: build every searched dropout as a
            `cnnzoo.layers.VariableDropout` (rate and type in variables), so
            that trials of the same shape can reuse one compiled model
            (`variable_hyperparameters`); `exportable` turns a trained model back into
            plain dropout layers. Defaults to `True`; with `False`, the
            dropout layers are the implementation's own.
        jit_compile: passed to `model.compile`. Defaults to `False`.
        name: the hypermodel's name. Defaults to `model_name`.
        tunable: Keras Tuner's flag. Defaults to `True`.
        weights: pretrained weights every trial starts from, as
            `cnnzoo.create_model`'s `weights`. The backbone is then frozen
            (batch norm in inference mode, no dropout in it: the first
            phase of `cnnzoo.transfer`'s recipe), and the head's dropout is
            what is searched. Defaults to `None`.
        fine_tune_epochs: with `weights`, epochs of `cnnzoo.transfer`'s
            second phase after the trial's epochs: the top stages unfrozen
            (batch norm frozen), a new optimizer of the recipe's
            kind, its schedule over these epochs (no warm-up). `block_dropout_rate`
            is then the unfrozen stages' dropout, searched by default.
            Defaults to 0 (the head alone trains).
        unfreeze: with `fine_tune_epochs`: `"all"` or a number of top stages,
            fixed, or a list of them, searched. Defaults to `"all"`.
        fine_tune_learning_rate: with `fine_tune_epochs`: the second phase's
            learning rate, as `learning_rate` (a number, `(low, high)` on a
            log scale, a list). Defaults to a tenth of the trial's learning
            rate.
        features: with `weights`, build the head alone (`cnnzoo.transfer.head_model`),
            which trains on the frozen backbone's features
            (`cnnzoo.transfer.feature_extractor`, computed once per search)
            instead of images: the same training, without running the
            backbone in every step of every trial. With `fine_tune_epochs`,
            the part after the stages that stay frozen in every trial
            (`cnnzoo.transfer.frozen_end`; not with `unfreeze="all"`), on
            those stages' output. `exportable` puts the trained part back on
            the pretrained backbone. Defaults to `False`.
        recipe: the training recipe every trial compiles with (a
            `cnnzoo.recipe.Recipe`). Defaults to `Recipe()`: Adam at 1e-3,
            constant, no regularisation, no augmentation.
        steps_per_epoch, epochs: what the recipe's learning-rate schedule
            spans (a trial's training steps per epoch, and epochs).
            Needed only with a schedule or a warm-up; defaults to `None`.

    Example:

    >>> hypermodel = ZooHyperModel("simple_cnn", input_shape=(8, 8, 1),
    ...                            num_classes=10)
    >>> tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy",
    ...                                  max_trials=5, directory="out")
    """

    def __init__(self, model_name, *, input_shape, num_classes, dropout_rate=None,
                 block_dropout_rate=None, per_stage=False, dropout_type=None,
                 learning_rate=None, activation=None, input_size=None,
                 implementation="keras", tunable_dropout=True, jit_compile=False, name=None,
                 tunable=True, weights=None, features=False, fine_tune_epochs=0,
                 unfreeze=None, fine_tune_learning_rate=None, weight_decay=None,
                 label_smoothing=None, recipe=None, steps_per_epoch=None, epochs=None):
        import cnnzoo
        from cnnzoo import recipe as recipes

        info = cnnzoo.model_info(model_name)  # raises on an unknown name
        super().__init__(name=name or model_name, tunable=tunable)
        self.model_name = model_name
        self.info = info
        self.input_shape = v.check_input_shape("input_shape", input_shape)
        self.num_classes = v.check_int("num_classes", num_classes, low=2)
        self.per_stage = v.check_bool("per_stage", per_stage)
        from cnnzoo.pipeline import model_input_size

        model_input_size(model_name, self.input_shape, input_size)  # checked now, not per trial
        self.input_size = input_size
        self.implementation = v.check_choice("implementation", implementation,
                                             ("keras", "primitive"))
        self.tunable_dropout = v.check_bool("tunable_dropout", tunable_dropout)
        if weights is not None:
            from cnnzoo import weights as pretrained

            pretrained.resolve(model_name, info, weights)  # checked now, loaded per trial
        from cnnzoo import transfer

        self.fine_tune_epochs = transfer.check_requirements(weights, fine_tune_epochs, unfreeze,
                                                            fine_tune_learning_rate)
        if weights is not None:
            if per_stage:
                v.fail("Expected no `per_stage` with `weights`: the unfrozen stages share one "
                       "rate.", "per_stage", per_stage)
            if not self.fine_tune_epochs:
                for name, value in (("block_dropout_rate", block_dropout_rate),
                                    ("dropout_type", dropout_type)):
                    if value is not None:
                        v.fail(f"Expected no `{name}` with `weights`: the backbone is frozen, "
                               f"with no dropout in it; the head's dropout is searched (with "
                               f"fine_tune_epochs, also the unfrozen stages').", name, value)
                block_dropout_rate, dropout_type = 0.0, "standard"
        if self.fine_tune_epochs:
            choices = unfreeze if isinstance(unfreeze, list) else [
                "all" if unfreeze is None else unfreeze]
            if not choices:
                v.fail("Expected `unfreeze` to list at least one value.", "unfreeze", unfreeze)
            # As strings: a Keras Tuner choice holds values of one type.
            choices = [str(transfer.check_unfreeze(model_name, info, u)) for u in choices]
            self.unfreeze = (("choice", choices, choices[0]) if isinstance(unfreeze, list)
                             else ("fixed", choices[0]))
            if features and "all" in choices:
                v.fail("Expected `features=False` with `unfreeze=\"all\"`: every stage trains "
                       "in the fine-tuning phase, so no part of the backbone is fixed.",
                       "features", features)
        else:
            self.unfreeze = None
        self.weights = weights
        self.features = v.check_bool("features", features)
        if self.features and weights is None:
            v.fail("Expected `weights` with `features=True` (the features of a frozen "
                   "pretrained backbone).", "features", features)
        self.jit_compile = jit_compile
        self.stages = info["stages"]
        space = info["search_space"]
        paper = info["dropout"]

        head_default = paper["dropout_rate"]
        block_paper = paper["block_dropout_rate"]
        if isinstance(block_paper, (list, tuple)):
            block_defaults = [float(r) for r in block_paper]
        else:
            block_defaults = [float(block_paper)] * self.stages
        self.dropout_rate = _rate_spec("dropout_rate", dropout_rate,
                                       space["dropout_rate"], head_default)
        self.block_dropout_rate = _rate_spec("block_dropout_rate", block_dropout_rate,
                                             space["block_dropout_rate"], max(block_defaults))
        self._block_stage_defaults = block_defaults
        self.dropout_type = _choice_spec("dropout_type", dropout_type, list(DROPOUT_TYPES),
                                         DROPOUT_TYPES)
        if recipe is None:
            recipe = recipes.Recipe()
        if not isinstance(recipe, recipes.Recipe):
            v.fail("Expected `recipe` to be a cnnzoo.recipe.Recipe.", "recipe", recipe)
        self.recipe = recipe
        self.steps_per_epoch = v.check_int("steps_per_epoch", steps_per_epoch, low=1,
                                           allow_none=True)
        self.epochs = v.check_int("epochs", epochs, low=1, allow_none=True)
        if recipe.has_schedule():
            if self.steps_per_epoch is None or self.epochs is None:
                v.fail(f"Expected `steps_per_epoch` and `epochs` for the recipe's "
                       f"{recipe.schedule} schedule (warm-up {recipe.warmup_epochs} epochs), "
                       f"which spans them.", "epochs", epochs)
            recipes.check_epochs(recipe, self.epochs)
        self.learning_rate = _number_spec(
            "learning_rate", learning_rate, default=recipe.resolved_learning_rate(),
            searched=LEARNING_RATE_RANGE, low=0.0, low_inclusive=False, high=10.0)
        self.weight_decay = _number_spec(
            "weight_decay", weight_decay, default=recipe.weight_decay,
            searched=WEIGHT_DECAY_CHOICES, low=0.0)  # the recipe's bounds
        self.label_smoothing = _number_spec(
            "label_smoothing", label_smoothing, default=recipe.label_smoothing,
            searched=LABEL_SMOOTHING_CHOICES, low=0.0, high=1.0, high_inclusive=False,
            log=False)
        # None: a tenth of the trial's learning rate.
        self.fine_tune_learning_rate = None if not self.fine_tune_epochs else (
            ("fixed", None) if fine_tune_learning_rate is None else _number_spec(
                "fine_tune_learning_rate", fine_tune_learning_rate,
                default=recipe.resolved_learning_rate() * transfer.FINE_TUNE_LR_FACTOR,
                searched=LEARNING_RATE_RANGE, low=0.0, low_inclusive=False, high=10.0))
        from cnnzoo.layers import factory

        self.activation = _choice_spec(
            "activation",
            ACTIVATION_CHOICES if activation is True else activation,
            info.get("default_activation", "relu"),
            factory.ACTIVATIONS,
        )

    # -- the search space ---------------------------------------------------

    def build(self, hp):
        """Declares the hyperparameters on `hp` and returns a compiled model."""
        return self.build_model(**self.declare(hp))

    def declare(self, hp):
        """Declares the search space on `hp`; returns the values `build_model` takes."""
        values = {"dropout_rate": _declare(hp, "dropout_rate", self.dropout_rate)}
        if self.per_stage:
            values["block_dropout_rate"] = [
                _declare(hp, f"block_dropout_rate_{i + 1}",
                         _stage_spec(self.block_dropout_rate, self._block_stage_defaults[i]))
                for i in range(self.stages)]
        else:
            values["block_dropout_rate"] = _declare(hp, "block_dropout_rate",
                                                    self.block_dropout_rate)
        for key in OTHER_KNOBS:
            values[key] = _declare(hp, key, getattr(self, key))
        if self.fine_tune_epochs:
            for key in ("unfreeze", "fine_tune_learning_rate"):
                values[key] = _declare(hp, key, getattr(self, key))
        return values

    def defaults(self):
        """The searched hyperparameters and their default values, as a dict."""
        hp = kt.HyperParameters()
        self.declare(hp)
        return dict(hp.values)

    def fixed_values(self):
        """The knobs that are not searched, with their values."""
        out = {}
        keys = ["dropout_rate", "block_dropout_rate", *OTHER_KNOBS]
        if self.fine_tune_epochs:
            keys += ["unfreeze", "fine_tune_learning_rate"]
        for key in keys:
            spec = getattr(self, key)
            if spec[0] == "fixed":
                out[key] = spec[1]
        if out.get("fine_tune_learning_rate", 0) is None:
            out["fine_tune_learning_rate"] = "learning_rate / 10"
        return out

    @property
    def variable_hyperparameters(self):
        """The hyperparameters whose values the built model holds in variables.

        Trials that differ only in these can train one after another on one
        compiled model, its variables assigned from each trial's fresh model
        (`tuning.reuse`): the learning rate (a variable of the optimizer,
        where the recipe has no schedule: a schedule's peak is a constant of
        the traced step) and, with `tunable_dropout`, every dropout rate and
        the dropout type (`cnnzoo.layers.VariableDropout`). Not the weight
        decay nor the label smoothing, which the optimizer and the loss hold
        as Python numbers.
        """
        if self.fine_tune_epochs:
            return frozenset()  # each trial compiles its fine-tuning phase anew
        names = set() if self.recipe.has_schedule() else {"learning_rate"}
        if self.tunable_dropout:
            blocks = ([f"block_dropout_rate_{i + 1}" for i in range(self.stages)]
                      if self.per_stage else ["block_dropout_rate"])
            names.update(["dropout_rate", "dropout_type", *blocks])
        return frozenset(names)

    def exportable(self, model, hp):
        """A trained model with plain dropout layers in place of `VariableDropout`.

        The same weights in a model built with `tunable_dropout=False` (the
        implementation's own dropout, no layer at rate 0): what an export
        should hold. Returns `model` itself without `tunable_dropout`.
        """
        if not self.tunable_dropout and not self.features:
            return model
        from cnnzoo import runtime

        values = self.declare(hp.copy())
        with runtime.dtype_policy(model.dtype_policy):  # the trained model's precision
            plain = self.build_model(**values, tunable_dropout=False, head=False)
        from cnnzoo import transfer

        try:
            if self.features:
                # The trained part on the pretrained backbone, layer by layer.
                transfer.copy_weights(model, transfer.head_model(
                    plain, start=self.feature_end(plain)))
                return plain
            return transfer.copy_weights(model, plain)
        except ValueError:
            v.fail(f"Expected a model of this hypermodel's configuration {values}, to "
                   f"rebuild it with plain dropout layers.", "model", model.name)

    def build_model(self, *, dropout_rate, block_dropout_rate, dropout_type, learning_rate,
                    activation, weight_decay=None, label_smoothing=None, tunable_dropout=None,
                    head=True, unfreeze="all", fine_tune_learning_rate=None):
        """Builds and compiles the model for one set of values.

        With `features`, the head model; with `head=False`, the whole model
        all the same (what `exportable` fills). `weight_decay` and
        `label_smoothing` default to the recipe's.
        """
        from cnnzoo.pipeline import build_classifier

        if tunable_dropout is None:
            tunable_dropout = self.tunable_dropout

        if isinstance(block_dropout_rate, (list, tuple)):
            block_dropout_rate = [_clean(r) for r in block_dropout_rate]
        else:
            block_dropout_rate = _clean(block_dropout_rate)
        if self.weights is not None:
            # Trials set the rates by phase (`cnnzoo.transfer.set_phase`); a
            # plain model gets the fine-tuning phase's: the unfrozen stages'.
            block_dropout_rate = 0.0 if tunable_dropout else self._plan(
                {"block_dropout_rate": block_dropout_rate, "unfreeze": unfreeze,
                 "fine_tune_learning_rate": fine_tune_learning_rate,
                 "learning_rate": learning_rate}).stage_rates(self.info)
        model = build_classifier(
            self.model_name, self.input_shape, self.num_classes, input_size=self.input_size,
            dropout_rate=_clean(dropout_rate), block_dropout_rate=block_dropout_rate,
            dropout_type=dropout_type, activation=activation,
            implementation=self.implementation, tunable_dropout=tunable_dropout,
            # Seeded by the trial's seed (Keras's global one), as the weights are.
            augment=self.recipe.augment, augment_flip=self.recipe.flip,
            # The head alone needs none of the backbone's weights: not loaded.
            **({"weights": self.weights} if self.weights is not None and not (
                self.features and head and not self.fine_tune_epochs) else {}),
        )
        if self.weights is not None:
            from cnnzoo import transfer

            transfer.set_phase(model, self.model_name, 1, transfer.Plan())
            if self.features and head:
                model = transfer.head_model(model, start=self.feature_end(model))
        return self._compile(model, learning_rate, weight_decay=weight_decay,
                             label_smoothing=label_smoothing, epochs=self.epochs)

    def feature_end(self, model):
        """The layer of `model` whose output `features=True` trains on (`None`: the backbone's end).

        With fine-tuning, the end of the stages no trial unfreezes.
        """
        if not self.fine_tune_epochs:
            return None
        from cnnzoo import transfer

        choices = self.unfreeze[1] if self.unfreeze[0] == "choice" else [self.unfreeze[1]]
        return transfer.frozen_end(model, self.model_name, choices)

    def _compile(self, model, learning_rate, *, weight_decay, label_smoothing, epochs,
                 warmup=True):
        """Compiles with the recipe, its schedule spanning `epochs`."""
        from cnnzoo.recipe import optim

        recipe = self.recipe if warmup else dataclasses.replace(self.recipe, warmup_epochs=0)
        return optim.compile_with(
            model, recipe, steps_per_epoch=self.steps_per_epoch or 1, epochs=epochs or 1,
            jit=self.jit_compile, learning_rate=float(learning_rate),
            weight_decay=weight_decay, label_smoothing=label_smoothing)

    def _plan(self, values):
        from cnnzoo import transfer

        rate = values.get("fine_tune_learning_rate")
        unfreeze = str(values.get("unfreeze", "all"))
        if rate is None:
            rate = values["learning_rate"] * transfer.FINE_TUNE_LR_FACTOR
        return transfer.Plan(self.fine_tune_epochs,
                             unfreeze if unfreeze == "all" else int(unfreeze), float(rate),
                             values["block_dropout_rate"])

    def fit(self, hp, model, *args, **kwargs):
        """`model.fit`, failing the trial (not the search) when the loss is not finite.

        With `fine_tune_epochs`, a second `fit` follows, of the fine-tuning
        phase (`cnnzoo.transfer`), its epochs numbered on from the first's;
        the history returned holds both.
        """
        guard = NonFiniteLossGuard()
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [guard]
        x = args[0] if args else kwargs.get("x")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        if not (hasattr(x, "shape") and hasattr(y, "shape")):
            x = y = None  # a dataset: the optimizer alone
        prepare_training(model, x, y)  # the first step is then traced once, not twice
        history = model.fit(*args, **kwargs)
        if guard.reason:
            raise kt.errors.FailedTrialError(guard.reason)
        if not self.fine_tune_epochs:
            return history
        from cnnzoo import transfer

        values = self.declare(hp.copy())
        plan = self._plan(values)
        transfer.set_phase(model, self.model_name, 2, plan)
        # A new optimizer of the recipe's kind, its schedule over the fine-tuning epochs.
        self._compile(model, plan.fine_tune_learning_rate, weight_decay=values["weight_decay"],
                      label_smoothing=values["label_smoothing"], epochs=self.fine_tune_epochs,
                      warmup=False)
        prepare_training(model, x, y)
        first = len(history.epoch) + int(kwargs.get("initial_epoch") or 0)
        # TensorBoard's HParams callback writes once per trial (at its first
        # `fit`) and refuses a second training session: left out of this one.
        callbacks = [c for c in kwargs["callbacks"]
                     if not type(c).__module__.startswith("tensorboard.plugins.hparams")]
        tuned = model.fit(*args, **{**kwargs, "callbacks": callbacks, "initial_epoch": first,
                                    "epochs": first + self.fine_tune_epochs})
        if guard.reason:
            raise kt.errors.FailedTrialError(guard.reason)
        tuned.history = {k: list(history.history.get(k, [])) + list(values)
                         for k, values in tuned.history.items()}
        tuned.epoch = list(history.epoch) + list(tuned.epoch)
        return tuned


class NonFiniteLossGuard(keras.callbacks.Callback if kt is not None else object):
    """Stops training when the loss stops being finite, and says when.

    Checked at the end of each epoch (a per-batch check would synchronize the
    device every step). `reason` stays `None` while the loss is finite.
    """

    def __init__(self):
        super().__init__()
        self.reason = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key in ("loss", "val_loss"):
            value = logs.get(key)
            if value is not None and not math.isfinite(float(value)):
                self.reason = f"{key} became {float(value)} at epoch {epoch + 1}"
                self.model.stop_training = True
                return


# -- specs ---------------------------------------------------------------------
# A spec is ("fixed", value), ("float", low, high, step, default, sampling) or
# ("choice", values, default).


def _snap(value, low, high, step):
    if step:
        value = low + round((value - low) / step) * step
    return _clean(min(max(value, low), high))


def _clean(value):
    # Keras Tuner's grid is `low + index * step` in floating point: 0.30000000000000004.
    return round(float(value), 6) if isinstance(value, float) else value


def _rate_spec(name, value, family_range, paper_default):
    if value is None:
        low, high, step = family_range
        return ("float", low, high, step, _snap(paper_default, low, high, step), "linear")
    if isinstance(value, tuple):
        if len(value) not in (2, 3):
            v.fail(f"Expected `{name}` as (low, high) or (low, high, step).", name, value)
        low = v.check_rate(f"{name}[0]", value[0])
        high = v.check_rate(f"{name}[1]", value[1])
        step = v.check_number(f"{name}[2]", value[2], low=0.0, low_inclusive=False) \
            if len(value) == 3 else None
        if high <= low:
            v.fail(f"Expected `{name}` as (low, high) with low < high.", name, value)
        return ("float", low, high, step, _snap(paper_default, low, high, step), "linear")
    if isinstance(value, list):
        if not value:
            v.fail(f"Expected `{name}` to list at least one rate.", name, value)
        values = [v.check_rate(f"{name}[{i}]", r) for i, r in enumerate(value)]
        return ("choice", values, values[0])
    return ("fixed", v.check_rate(name, value))


def _stage_spec(spec, stage_default):
    if spec[0] == "float":
        _, low, high, step, _, sampling = spec
        return ("float", low, high, step, _snap(stage_default, low, high, step), sampling)
    return spec


def _choice_spec(name, value, default, valid):
    if value is None:
        value = default
    if isinstance(value, list):
        if not value:
            v.fail(f"Expected `{name}` to list at least one value.", name, value)
        values = [v.check_choice(name, x, valid) for x in value]
        return ("choice", values, values[0])
    return ("fixed", v.check_choice(name, value, valid))


def _number_spec(name, value, *, default, searched, log=True, **bounds):
    """The spec of a number knob: fixed at `default` unless searched (see the module docstring).

    `searched` is what `True` means (a `(low, high)` range or a list);
    `bounds` are `check_number`'s. A range is sampled on a log scale where
    `log` and its low end is above 0.
    """
    def check(n, x):
        return v.check_number(n, x, **bounds)

    if value is None or value is False:
        return ("fixed", check(name, default))
    if value is True:
        value = searched
    if isinstance(value, tuple):
        if len(value) != 2:
            v.fail(f"Expected `{name}` as (low, high).", name, value)
        low, high = check(f"{name}[0]", value[0]), check(f"{name}[1]", value[1])
        if high <= low:
            v.fail(f"Expected `{name}` as (low, high) with low < high.", name, value)
        start = min(max(default, low), high)
        return ("float", low, high, None, start, "log" if log and low > 0 else "linear")
    if isinstance(value, list):
        values = [check(f"{name}[{i}]", x) for i, x in enumerate(value)]
        if not values:
            v.fail(f"Expected `{name}` to list at least one value.", name, value)
        return ("choice", values, values[0])
    if isinstance(value, numbers.Real):
        return ("fixed", check(name, value))
    v.fail(f"Expected `{name}` as a number, (low, high), a list, or True.", name, value)


def _declare(hp, name, spec):
    kind = spec[0]
    if kind == "fixed":
        return spec[1]
    if kind == "choice":
        return hp.Choice(name, spec[1], default=spec[2])
    _, low, high, step, default, sampling = spec
    # Keras Tuner counts grid points with floor division, which drops the top
    # of the grid in floating point (0.5 // 0.1 == 4.0); a hair above `high`
    # keeps it.
    top = high + step * 1e-6 if step else high
    return hp.Float(name, min_value=low, max_value=top, step=step, sampling=sampling,
                    default=default)
