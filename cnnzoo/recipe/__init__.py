"""The training recipe: optimizer, learning-rate schedule, regularisation, augmentation.

`Recipe` is the one place these settings are declared. `cnnzoo train`'s
options, `cnnzoo.train.train`'s checks, `run.json`'s `config`, the search's
settings (`tuning.config.SearchConfig` holds every `Recipe` field) and the
model cards are derived from its fields and their metadata. The defaults
are what training did before these settings existed (Adam at 1e-3,
constant, no weight decay, no label smoothing, no clipping, no
augmentation), so earlier runs and searches resume unchanged.

What the settings build (`keras.optimizers`, `keras.optimizers.schedules`,
`keras.layers` preprocessing layers) is in `cnnzoo.recipe.optim` and
`cnnzoo.recipe.augment`; this module imports no Keras, so that
`cnnzoo tune --help` stays instant.

Each field's metadata: `help` (for `--help` and docstrings), `cli` (its
`argparse.add_argument` keywords), and the search's `record`, `identity`
and `card` flags (see `tuning.config`): every recipe setting changes what
a trial trains, so all three are set.
"""

import dataclasses

from cnnzoo import _validation as v

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
AUGMENTATIONS = ("none", "light", "default", "strong", "randaugment")
# `keras.layers.RandomFlip`'s modes, and none.
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", "none")
# Keras's own default learning rates (`keras.optimizers.Adam`, `AdamW`, `SGD`).
DEFAULT_LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2}
# SGD's momentum, with Nesterov's update (the ResNet and timm recipes).
SGD_MOMENTUM = 0.9


def _field(default, help, cli):
    return dataclasses.field(default=default, metadata={
        "help": help, "cli": cli, "record": True, "identity": True, "card": True})


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model is trained: optimizer, schedule, regularisation, augmentation.

    Checked once, on construction. See the module docstring.
    """

    # keras.optimizers.Adam, AdamW, or SGD (momentum 0.9, Nesterov).
    optimizer: str = _field("adam", "Optimizer: adam, adamw or sgd (momentum 0.9, Nesterov). "
                                    "Default: adam.", {"choices": OPTIMIZERS})
    # The peak learning rate (None: the optimizer's Keras default, 1e-3 or 0.01 for sgd).
    learning_rate: float = _field(None, "Learning rate (the peak of a schedule). Default: "
                                        "the optimizer's (1e-3 for adam and adamw, 0.01 for "
                                        "sgd).", {"type": float})
    # Keras's decoupled weight decay (`weight_decay` of every keras optimizer); 0: none.
    weight_decay: float = _field(0.0, "Decoupled weight decay (Keras's optimizers' "
                                      "weight_decay; adamw is Adam with it). Default: 0.",
                                 {"type": float})
    # The learning rate over training, per step: constant, cosine to 0, or x0.1 at 1/2 and 3/4.
    schedule: str = _field("constant", "Learning-rate schedule: constant, cosine (to 0 at "
                                       "the last epoch) or step (x0.1 at 1/2 and 3/4 of the "
                                       "epochs). Default: constant.", {"choices": SCHEDULES})
    # Epochs of linear warm-up to the learning rate, before the schedule.
    warmup_epochs: int = _field(0, "Epochs of linear warm-up to the learning rate before the "
                                   "schedule. Default: 0.", {"type": int})
    # The cross-entropy's label smoothing (0: none).
    label_smoothing: float = _field(0.0, "Label smoothing of the cross-entropy, in [0, 1). "
                                         "Default: 0.", {"type": float})
    # Gradient clipping by norm, per variable (Keras's `clipnorm`; None: none).
    clipnorm: float = _field(None, "Clip each gradient to this norm (Keras's clipnorm). "
                                   "Default: no clipping.", {"type": float})
    # The augmentation policy, inside the training step only (`cnnzoo.recipe.augment`).
    augment: str = _field("none", "Augmentation while training (off at inference and in "
                                  "exports), after the --flip: none, light (shift), default "
                                  "(shift, zoom, rotation, contrast), strong or randaugment. "
                                  "Default: none.", {"choices": AUGMENTATIONS})
    # The policy's random flip (`keras.layers.RandomFlip`'s mode). Horizontal suits
    # photographs; a mirrored digit or letter is another symbol or none: use "none".
    flip: str = _field("horizontal", "The augmentation's random flip: horizontal, vertical, "
                                     "horizontal_and_vertical or none (for digits, text and "
                                     "anything a mirror changes). Default: horizontal.",
                       {"choices": FLIPS})

    def __post_init__(self):
        check_recipe(self)

    def has_schedule(self):
        """Whether the learning rate changes over training (a schedule or a warm-up)."""
        return self.schedule != "constant" or self.warmup_epochs > 0

    def resolved_learning_rate(self):
        """The learning rate, the optimizer's default where none was given."""
        if self.learning_rate is None:
            return DEFAULT_LEARNING_RATES[self.optimizer]
        return self.learning_rate

    def given(self):
        """`{name: value}` of every field as given (the keywords of `cnnzoo.train.train`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Recipe)}

    def settings(self):
        """`{name: value}` of every field (the learning rate resolved): what `run.json` records."""
        out = self.given()
        out["learning_rate"] = self.resolved_learning_rate()
        return out


def describe(recipe):
    """`"adamw, learning rate 0.001, weight decay 0.05, cosine after 1 warm-up epoch; ..."`.

    Takes a `Recipe` or anything with its fields (a `SearchConfig`).
    """
    rate = (recipe.learning_rate if recipe.learning_rate is not None
            else DEFAULT_LEARNING_RATES[recipe.optimizer])
    sgd = " (momentum 0.9, Nesterov)" if recipe.optimizer == "sgd" else ""
    parts = [f"{recipe.optimizer}{sgd}", f"learning rate {rate:g}"]
    if recipe.weight_decay:
        parts.append(f"weight decay {recipe.weight_decay:g}")
    schedule = f"{recipe.schedule} schedule"
    if recipe.warmup_epochs:
        n = recipe.warmup_epochs
        schedule += f" after {n} warm-up epoch{'s' if n > 1 else ''}"
    parts.append(schedule)
    if recipe.label_smoothing:
        parts.append(f"label smoothing {recipe.label_smoothing:g}")
    if recipe.clipnorm:
        parts.append(f"gradients clipped to norm {recipe.clipnorm:g}")
    if recipe.augment == "none":
        parts.append("no augmentation")
    else:
        flip = "no flip" if recipe.flip == "none" else f"{recipe.flip} flip"
        parts.append(f"{recipe.augment} augmentation ({flip})")
    return ", ".join(parts)


def check_recipe(recipe):
    """Checks (and normalises, in place) the recipe fields of `recipe`.

    Also what `tuning.config.SearchConfig`, which holds these fields, runs.
    """
    set_ = object.__setattr__  # frozen: the checked values replace the given ones
    v.check_choice("optimizer", recipe.optimizer, OPTIMIZERS)
    v.check_choice("schedule", recipe.schedule, SCHEDULES)
    v.check_choice("augment", recipe.augment, AUGMENTATIONS)
    v.check_choice("flip", recipe.flip, FLIPS)
    set_(recipe, "learning_rate", v.check_number(
        "learning_rate", recipe.learning_rate, low=0.0, low_inclusive=False, allow_none=True))
    set_(recipe, "weight_decay", v.check_number("weight_decay", recipe.weight_decay, low=0.0))
    set_(recipe, "warmup_epochs", v.check_int("warmup_epochs", recipe.warmup_epochs, low=0))
    set_(recipe, "label_smoothing", v.check_number(
        "label_smoothing", recipe.label_smoothing, low=0.0, high=1.0, high_inclusive=False))
    set_(recipe, "clipnorm", v.check_number("clipnorm", recipe.clipnorm, low=0.0,
                                            low_inclusive=False, allow_none=True))


def defaults():
    """`{name: default}` of every recipe setting."""
    return {f.name: f.default for f in dataclasses.fields(Recipe)}


def fields():
    """The recipe's `dataclasses.Field`s."""
    return dataclasses.fields(Recipe)


def check_epochs(recipe, epochs):
    """Refuses a warm-up that leaves no epoch for the schedule."""
    if recipe.warmup_epochs and recipe.warmup_epochs >= epochs:
        v.fail(f"Expected `warmup_epochs` below the {epochs} epochs of training.",
               "warmup_epochs", recipe.warmup_epochs)


def add_arguments(parser):
    """Adds one command-line option per recipe field (`--optimizer`, `--learning-rate`, ...)."""
    for f in fields():
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default,
                            help=f.metadata["help"], **f.metadata["cli"])


def from_arguments(args):
    """The `Recipe` of parsed command-line arguments (checked)."""
    return Recipe(**{f.name: getattr(args, f.name) for f in fields()})
