"""`ZooHyperModel`: any zoo model, its dropout rates declared as Keras Tuner hyperparameters.

The search space is declared in `build(hp)`, next to where each value is
used, with stable names and explicit defaults (Keras Tuner's own
applications do the same). Every hyperparameter argument takes one of:

- `None`: the family's default (searched for the dropout knobs, fixed for
  the learning rate and the activation);
- a number or a string: that value, fixed (not declared, not searched);
- a tuple `(low, high)` or `(low, high, step)`: a `hp.Float` range (log
  sampling for the learning rate);
- a list: a `hp.Choice` among its values.

Hyperparameter names: `dropout_rate` (head), `block_dropout_rate` (shared
by every stage) or `block_dropout_rate_1` ... `block_dropout_rate_N` (one per
stage, with `per_stage=True`), `dropout_type`, `learning_rate`, `activation`.
"""

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
DEFAULT_LEARNING_RATE = 1e-3
# Searched when `learning_rate=True`.
LEARNING_RATE_RANGE = (1e-4, 1e-2)
ACTIVATION_CHOICES = ["relu", "leaky_relu", "gelu"]


class ZooHyperModel(_HyperModelBase):
    """A Keras Tuner `HyperModel` that builds a zoo model with searched dropout.

    The model takes raw images (pixels 0-255; it resizes and rescales inside,
    see `cnnzoo.pipeline.build_classifier`), ends in a float32 softmax named
    `probabilities`, and is compiled with Adam, sparse categorical
    cross-entropy and accuracy. `fit` records a trial whose loss becomes NaN
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
        learning_rate: Adam's learning rate. Defaults to `1e-3`, fixed;
            `True` searches `LEARNING_RATE_RANGE` on a log scale.
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
            (batch norm frozen), a new Adam optimizer. `block_dropout_rate`
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
            backbone in every step of every trial. `exportable` puts the
            trained head back on the pretrained backbone. Defaults to
            `False`.

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
                 unfreeze=None, fine_tune_learning_rate=None):
        import cnnzoo

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
            if features:
                v.fail("Expected `features=False` with `fine_tune_epochs`: the fine-tuning "
                       "phase trains through the backbone.", "features", features)
            choices = unfreeze if isinstance(unfreeze, list) else [
                "all" if unfreeze is None else unfreeze]
            if not choices:
                v.fail("Expected `unfreeze` to list at least one value.", "unfreeze", unfreeze)
            # As strings: a Keras Tuner choice holds values of one type.
            choices = [str(transfer.check_unfreeze(model_name, info, u)) for u in choices]
            self.unfreeze = (("choice", choices, choices[0]) if isinstance(unfreeze, list)
                             else ("fixed", choices[0]))
            # None: a tenth of the trial's learning rate.
            self.fine_tune_learning_rate = _learning_rate_spec(
                fine_tune_learning_rate, "fine_tune_learning_rate", default=None)
        else:
            self.unfreeze = self.fine_tune_learning_rate = None
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
        self.learning_rate = _learning_rate_spec(learning_rate)
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
        for key in ("dropout_type", "learning_rate", "activation"):
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
        keys = ["dropout_rate", "block_dropout_rate", "dropout_type", "learning_rate",
                "activation"]
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
        (`tuning.reuse`): the learning rate (a variable of the optimizer)
        and, with `tunable_dropout`, every dropout rate and the dropout type
        (`cnnzoo.layers.VariableDropout`).
        """
        if self.fine_tune_epochs:
            return frozenset()  # each trial compiles its fine-tuning phase anew
        names = {"learning_rate"}
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
                # The trained head on the pretrained backbone, layer by layer.
                transfer.copy_weights(model, transfer.head_model(plain))
                return plain
            return transfer.copy_weights(model, plain)
        except ValueError:
            v.fail(f"Expected a model of this hypermodel's configuration {values}, to "
                   f"rebuild it with plain dropout layers.", "model", model.name)

    def build_model(self, *, dropout_rate, block_dropout_rate, dropout_type, learning_rate,
                    activation, tunable_dropout=None, head=True, unfreeze="all",
                    fine_tune_learning_rate=None):
        """Builds and compiles the model for one set of values.

        With `features`, the head model; with `head=False`, the whole model
        all the same (what `exportable` fills).
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
            # The head alone needs none of the backbone's weights: not loaded.
            **({"weights": self.weights}
               if self.weights is not None and not (self.features and head) else {}),
        )
        if self.weights is not None:
            from cnnzoo import transfer

            transfer.set_phase(model, self.model_name, 1, transfer.Plan())
            if self.features and head:
                model = transfer.head_model(model)
        return self._compile(model, learning_rate)

    def _compile(self, model, learning_rate):
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=float(learning_rate)),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=self.jit_compile,
        )
        return model

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

        plan = self._plan(self.declare(hp.copy()))
        transfer.set_phase(model, self.model_name, 2, plan)
        self._compile(model, plan.fine_tune_learning_rate)
        prepare_training(model, x, y)
        first = len(history.epoch) + int(kwargs.get("initial_epoch") or 0)
        tuned = model.fit(*args, **{**kwargs, "initial_epoch": first,
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


def _learning_rate_spec(value, name="learning_rate", default=DEFAULT_LEARNING_RATE):
    def check(n, x):
        return v.check_number(n, x, low=0.0, low_inclusive=False, high=10.0)

    if value is None or value is False:
        return ("fixed", default)
    if value is True:
        value = LEARNING_RATE_RANGE
    if isinstance(value, tuple):
        if len(value) != 2:
            v.fail(f"Expected `{name}` as (low, high).", name, value)
        low, high = check(f"{name}[0]", value[0]), check(f"{name}[1]", value[1])
        if high <= low:
            v.fail(f"Expected `{name}` as (low, high) with low < high.", name,
                   value)
        default = min(max(default or low, low), high)
        return ("float", low, high, None, default, "log")
    if isinstance(value, list):
        values = [check(f"{name}[{i}]", x) for i, x in enumerate(value)]
        if not values:
            v.fail(f"Expected `{name}` to list at least one value.", name, value)
        return ("choice", values, values[0])
    if isinstance(value, numbers.Real):
        return ("fixed", check(name, value))
    v.fail(f"Expected `{name}` as a number, (low, high), a list, or True.",
           name, value)


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
