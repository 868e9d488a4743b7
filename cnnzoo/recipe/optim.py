"""A recipe's optimizer, learning-rate schedule and loss, from `keras.optimizers`.

`build_optimizer(recipe, ...)` gives `keras.optimizers.Adam`, `AdamW` or
`SGD` (momentum 0.9, Nesterov) with the recipe's weight decay and
`clipnorm`; its learning rate is a float where the schedule is constant
without warm-up (a variable of the optimizer, which the search assigns
between trials), else a schedule of the optimizer's step
count, which the run's checkpoints hold, so that a resumed run continues
the schedule where it stopped:

- `cosine`: `keras.optimizers.schedules.CosineDecay` from the learning rate
  to 0 over the steps after the warm-up;
- `step`: `keras.optimizers.schedules.PiecewiseConstantDecay`, x0.1 at 1/2
  and x0.01 at 3/4 of those steps (the ResNet recipe's milestones);
- warm-up (`Warmup`): linear from `lr / warmup_steps` to the learning rate
  over the first `warmup_epochs`, then the schedule.

`build_loss(label_smoothing)` is Keras's sparse categorical cross-entropy,
or `LabelSmoothingCrossentropy` (Keras's sparse loss has no smoothing).
"""

import keras

from cnnzoo.recipe import SGD_MOMENTUM

# The step schedule's milestones (fractions of the steps after warm-up) and factor.
STEP_MILESTONES = (0.5, 0.75)
STEP_FACTOR = 0.1


@keras.saving.register_keras_serializable(package="cnnzoo")
class Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `target` over `warmup_steps`, then `after` (or `target`, constant).

    Step `s` (0-based) of the warm-up has the rate `target * (s + 1) /
    warmup_steps`: the first step already moves, the last is at `target`.
    After it, `after` is called with the steps counted from the warm-up's
    end.

    Args:
        target: the learning rate the warm-up reaches.
        warmup_steps: the number of warm-up steps (at least 1).
        after: a `LearningRateSchedule` for the rest, or `None` to stay at
            `target`. Defaults to `None`.
    """

    def __init__(self, target, warmup_steps, after=None):
        self.target = float(target)
        self.warmup_steps = int(warmup_steps)
        self.after = after

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.target * (step + 1.0) / float(self.warmup_steps)
        rest = (self.after(keras.ops.maximum(step - self.warmup_steps, 0.0))
                if self.after is not None else self.target)
        return keras.ops.where(step < self.warmup_steps, warm, rest)

    def get_config(self):
        return {"target": self.target, "warmup_steps": self.warmup_steps,
                "after": (keras.optimizers.schedules.serialize(self.after)
                          if self.after is not None else None)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("after") is not None:
            config["after"] = keras.optimizers.schedules.deserialize(config["after"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="cnnzoo")
class LabelSmoothingCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy (integer labels) with label smoothing.

    The labels become one-hot vectors smoothed as
    `keras.losses.CategoricalCrossentropy(label_smoothing=...)` smooths them
    (`y * (1 - s) + s / num_classes`).

    Args:
        label_smoothing: in [0, 1).
        name, reduction, dtype: as `keras.losses.Loss`.
    """

    def __init__(self, label_smoothing=0.0, name="label_smoothing_crossentropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1]
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
        one_hot = keras.ops.one_hot(labels, classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def build_schedule(recipe, learning_rate, *, steps_per_epoch, epochs):
    """The learning rate `build_optimizer` gives the optimizer: a float or a schedule.

    Args:
        recipe: a `cnnzoo.recipe.Recipe`.
        learning_rate: the peak rate.
        steps_per_epoch: training steps per epoch.
        epochs: the epochs the schedule spans.
    """
    learning_rate = float(learning_rate)
    warmup = recipe.warmup_epochs * steps_per_epoch
    rest = max(epochs * steps_per_epoch - warmup, 1)
    schedules = keras.optimizers.schedules
    if recipe.schedule == "cosine":
        after = schedules.CosineDecay(learning_rate, decay_steps=rest, alpha=0.0)
    elif recipe.schedule == "step":
        after = schedules.PiecewiseConstantDecay(
            boundaries=[max(int(rest * m), 1) for m in STEP_MILESTONES],
            values=[learning_rate * STEP_FACTOR ** i for i in range(len(STEP_MILESTONES) + 1)])
    else:
        after = None
    if warmup:
        return Warmup(learning_rate, warmup, after)
    return learning_rate if after is None else after


def build_optimizer(recipe, *, steps_per_epoch, epochs, learning_rate=None, weight_decay=None):
    """The recipe's `keras.optimizers.Optimizer`.

    Args:
        recipe: a `cnnzoo.recipe.Recipe`.
        steps_per_epoch, epochs: what the schedule spans.
        learning_rate: overrides the recipe's (a searched value). Defaults
            to the recipe's, resolved.
        weight_decay: overrides the recipe's. Defaults to the recipe's.
    """
    if learning_rate is None:
        learning_rate = recipe.resolved_learning_rate()
    if weight_decay is None:
        weight_decay = recipe.weight_decay
    rate = build_schedule(recipe, learning_rate, steps_per_epoch=steps_per_epoch,
                          epochs=epochs)
    common = {"learning_rate": rate, "clipnorm": recipe.clipnorm,
              # None, not 0: Keras then leaves weight decay out of the step altogether.
              "weight_decay": float(weight_decay) if weight_decay else None}
    if recipe.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=SGD_MOMENTUM, nesterov=True, **common)
    if recipe.optimizer == "adamw":
        # AdamW's own default decay (0.004) is not used: 0 means none, as for the others.
        return keras.optimizers.AdamW(**{**common, "weight_decay": float(weight_decay)})
    return keras.optimizers.Adam(**common)


def build_loss(label_smoothing=0.0):
    """The loss: Keras's sparse categorical cross-entropy, smoothed where asked."""
    if not label_smoothing:
        return "sparse_categorical_crossentropy"
    return LabelSmoothingCrossentropy(label_smoothing)


def current_learning_rate(optimizer):
    """The rate the optimizer's next step uses (after its schedule), as a float."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def compile_with(model, recipe, *, steps_per_epoch, epochs, jit=False, learning_rate=None,
                 weight_decay=None, label_smoothing=None):
    """Compiles `model` with the recipe's optimizer and loss, and accuracy.

    `learning_rate`, `weight_decay` and `label_smoothing` override the
    recipe's (the search's values of a trial). Returns the model.
    """
    if label_smoothing is None:
        label_smoothing = recipe.label_smoothing
    model.compile(optimizer=build_optimizer(recipe, steps_per_epoch=steps_per_epoch,
                                            epochs=epochs, learning_rate=learning_rate,
                                            weight_decay=weight_decay),
                  loss=build_loss(label_smoothing), metrics=["accuracy"], jit_compile=jit)
    return model
