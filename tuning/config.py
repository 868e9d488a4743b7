"""`SearchConfig`: every setting of a search, in one place.

The command line's options and defaults (`cnnzoo tune`), `tuning.search`'s
keywords and docstring, `search.json` (what a search records of itself),
the checks that a resumed search or a worker has the same settings, and the
model card's search section are all derived from the fields below and their
metadata, not listed by hand. The values are checked once, where they enter
(`SearchConfig(...)`, which `tuning.search` and `cnnzoo tune` both build).

Each field's metadata:

- `help`: what it is, for `--help` and `search()`'s docstring;
- `cli`: its command-line option, as `argparse.add_argument` keywords (with
  `flag`, the option's name when it is not `--<field-name>`); absent for a
  setting only the Python API takes;
- `record`: written to `search.json`; `identity`: a resumed search, and
  every worker, must have the same value (another would mix two searches);
  `card`: in the exported model card's search section.

Importing this module is instant (no Keras): `cnnzoo tune --help` builds
its options from it.
"""

import dataclasses
import inspect
import os
import textwrap

from cnnzoo import _validation as v
from cnnzoo import recipe as recipes

TUNER_NAMES = ("random", "bayesian", "hyperband")
OBJECTIVES = ("val_accuracy", "val_loss", "accuracy", "loss")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
DISTRIBUTIONS = ("none", "mirrored")
COLOR_MODES = (None, "grayscale", "rgb")
SETTINGS_FILE = "search.json"
# The command line's switches for `hypermodel_kwargs` (`ZooHyperModel`'s
# arguments): keyword -> (option, help).
HYPERMODEL_FLAGS = {
    "per_stage": ("--per-stage", "Search one block dropout rate per stage instead of one "
                                 "shared."),
    "learning_rate": ("--search-learning-rate", "Also search the learning rate (1e-4 to "
                                                "1e-2, log scale)."),
    "weight_decay": ("--search-weight-decay", "Also search the weight decay (0, 1e-4, 1e-3, "
                                              "0.01 or 0.05)."),
    "label_smoothing": ("--search-label-smoothing", "Also search the label smoothing (0, "
                                                    "0.05, 0.1 or 0.2)."),
    "activation": ("--search-activation", "Also search the activation (relu, leaky_relu, "
                                          "gelu)."),
}


def _field(default, help, *, cli=None, record=False, identity=False, card=False):
    return dataclasses.field(default=default, metadata={
        "help": help, "cli": cli, "record": record or identity, "identity": identity,
        "card": card})


def _recipe_field(name):
    """A `cnnzoo.recipe.Recipe` field as a search setting: its default, help and option.

    Every recipe setting changes what a trial trains: recorded, part of the
    search's identity, in the card.
    """
    f = next(f for f in recipes.fields() if f.name == name)
    return _field(f.default, f.metadata["help"], cli=f.metadata["cli"], identity=True,
                  card=True)


def _parse_jit(text):
    from cnnzoo.commands.train import parse_jit

    return parse_jit(text)


def _size_parser(name):
    def parse(text):
        from cnnzoo.commands.train import parse_size

        return parse_size(text, name)

    return parse


def _parse_worker_timeout(text):
    from cnnzoo.commands.zoo import parse_number

    seconds = parse_number("worker_timeout", text, float)
    return None if seconds == 0 else seconds


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Every setting of a dropout-rate search (see the module docstring)."""

    # -- what is searched, and on what ------------------------------------------
    # The zoo model whose rates are searched (`cnnzoo list`).
    model: str = _field("simple_cnn", "Zoo model to tune (see `cnnzoo list`).", cli={},
                        identity=True)
    # The dataset (`cnnzoo.data.load_dataset`); a path is recorded absolute, data in
    # memory by form, shapes, dtypes and content hash (`cnnzoo.data.record`).
    data: object = _field("digits", "digits, shapes, a .npz file or an image folder; in Python "
                                    "also (x, y) arrays, a finite tf.data.Dataset or "
                                    "keras.utils.PyDataset (read once into arrays) or a "
                                    "cnnzoo.data.Dataset.",
                          cli={"help": "digits, shapes, a .npz file or an image folder."},
                          identity=True)
    # Validation data instead of the validation split, as `model.fit`'s.
    validation_data: object = _field(None, "(x, y) arrays or a pipeline to validate on, as "
                                           "model.fit's (the data then give the train and "
                                           "test splits).", identity=True)
    # Keras Tuner's search algorithm.
    tuner: str = _field("random", "Keras Tuner search: random, bayesian or hyperband.",
                        cli={"choices": TUNER_NAMES}, identity=True, card=True)
    # Trials of a random or Bayesian search; raising it extends a finished one.
    max_trials: int = _field(10, "Trials to run (random and bayesian; hyperband sizes itself "
                                 "from the epochs). Raise it to extend a finished search.",
                             cli={"type": int}, record=True, card=True)
    # Epochs per trial (Hyperband's largest).
    epochs: int = _field(10, "Epochs per trial (hyperband: the most).", cli={"type": int},
                         identity=True, card=True)
    # The metric the search optimizes.
    objective: str = _field("val_accuracy", "Metric to optimize.",
                            cli={"choices": OBJECTIVES}, identity=True, card=True)
    # Seeds the data splits, the oracle and every trial.
    seed: int = _field(0, "Seeds the data splits, the oracle and every trial.",
                       cli={"type": int}, identity=True, card=True)
    # Training batch size.
    batch_size: int = _field(32, "Training batch size.", cli={"type": int}, identity=True)
    # A stratified subset of this many examples (None: all).
    num_samples: int = _field(None, "Use a stratified subset of this many examples.",
                              cli={"type": int}, identity=True)
    # Resize the images to this size when loading (N or (H, W); None: keep).
    image_size: object = _field(None, "N or H,W: resize the images to it when loading.",
                                cli={"type": _size_parser("image_size")}, identity=True)
    # Convert every image to grey or RGB when loading (None: keep their channels).
    color_mode: str = _field(None, "Convert every image to grey or RGB (default: keep their "
                                   "channels, which must then agree across a folder).",
                             cli={"choices": ("grayscale", "rgb")}, identity=True)
    # Skip unreadable images of a folder (listed once) instead of stopping at the first.
    skip_bad_images: bool = _field(False, "Image folders: skip the unreadable images (listed "
                                          "once, with their count) instead of stopping at the "
                                          "first.", cli={"action": "store_true"},
                                   identity=True)
    # Pretrained weights every trial starts from (`cnnzoo.create_model`'s `weights`).
    weights: str = _field(None, "Pretrained weights every trial starts from: imagenet, a set "
                                "name (see `cnnzoo info MODEL`) or a file.", cli={},
                          identity=True, card=True)
    # With weights: the fine-tuning phase after each trial's epochs (`cnnzoo.transfer`).
    fine_tune_epochs: int = _field(0, "With --weights: epochs of each trial's fine-tuning "
                                      "phase (the top stages unfrozen, batch norm frozen); the "
                                      "unfrozen stages' dropout is then searched too.",
                                   cli={"type": int}, identity=True, card=True)
    # The stages the fine-tuning phase trains: "all" or the top K (a list: searched).
    unfreeze: object = _field(None, "With --fine-tune-epochs: all (default) or the top K "
                                    "stages.", cli={"metavar": "all|K"}, identity=True,
                              card=True)
    # The fine-tuning phase's learning rate (None: a tenth of the trial's).
    fine_tune_learning_rate: object = _field(None, "With --fine-tune-epochs: its learning "
                                                   "rate (default: a tenth of the trial's).",
                                             cli={"type": float}, identity=True, card=True)
    # With weights: train each trial's head on the frozen backbone's features,
    # computed once (`tuning.features`); off, every trial runs the backbone.
    cache_features: bool = _field(True, "With --weights: compute the frozen backbone's "
                                        "features once and train every trial's head on them "
                                        "(--no-cache-features: run the backbone in every "
                                        "trial, the same training, slower).",
                                  cli={"flag": "--no-cache-features", "action": "store_false"})
    # The size the model sees, resized inside it (None: the images' own).
    input_size: object = _field(None, "N or H,W the model sees (images are resized inside "
                                      "the model).", cli={"type": _size_parser("input_size")},
                                identity=True)
    # `ZooHyperModel` arguments: ranges, which knobs are searched, per_stage.
    hypermodel_kwargs: dict = _field(None, "Arguments of `ZooHyperModel` (ranges, which "
                                           "knobs are searched, `per_stage`, ...).")
    # -- the training recipe (`cnnzoo.recipe.Recipe`: its comments, checks and options) ----
    # A searched learning rate, weight decay or label smoothing (`hypermodel_kwargs`)
    # starts from these; the rest is the same for every trial.
    optimizer: str = _recipe_field("optimizer")
    learning_rate: float = _recipe_field("learning_rate")
    weight_decay: float = _recipe_field("weight_decay")
    schedule: str = _recipe_field("schedule")
    warmup_epochs: int = _recipe_field("warmup_epochs")
    label_smoothing: float = _recipe_field("label_smoothing")
    clipnorm: float = _recipe_field("clipnorm")
    augment: str = _recipe_field("augment")
    flip: str = _recipe_field("flip")
    # -- how it runs ---------------------------------------------------------------
    # Everything the search writes, Keras Tuner's state too (`<out>/keras_tuner`).
    out: str = _field("tune_results", "Folder for everything the search writes (Keras "
                                      "Tuner's state too).", cli={})
    # Start afresh in `out` instead of resuming.
    overwrite: bool = _field(False, "Start afresh in --out instead of resuming.",
                             cli={"action": "store_true"})
    # Keras's dtype policy; "auto": bfloat16 where the hardware runs it fast. Trials in
    # other precisions score otherwise, so it is part of the search's identity.
    precision: str = _field("auto", "Precision: auto (bfloat16 where the hardware runs it "
                                    "fast), float32, mixed_bfloat16 or mixed_float16.",
                            cli={"choices": PRECISIONS}, identity=True, card=True)
    # XLA compilation: "auto" (on for GPUs and JAX, off for TensorFlow on CPUs), True, False.
    jit: object = _field("auto", "XLA compilation: auto (on for GPUs and with JAX, off for "
                                 "TensorFlow on CPUs), on or off.",
                         cli={"type": _parse_jit, "metavar": "{auto,on,off}"})
    # TensorFlow's intra-op threads, set before TensorFlow starts.
    threads: object = _field("auto", "TensorFlow's intra-op threads: auto (1 on a CPU for "
                                     "models whose training batch is tiny, as the default "
                                     "search's; one per core otherwise) or a number.",
                             cli={})
    # Each trial on every local GPU (TensorFlow MirroredStrategy; Keras DataParallel on JAX).
    distribution: str = _field("none", "mirrored: each trial on every local GPU "
                                       "(TensorFlow MirroredStrategy; Keras DataParallel on "
                                       "JAX).", cli={"choices": DISTRIBUTIONS})
    # Export the best model (a SavedModel, or .keras without TensorFlow).
    export: bool = _field(True, "Export the best model.",
                          cli={"flag": "--no-export", "action": "store_false",
                               "help": "Do not export the best model."})
    # Stop (resumably) after this many failed trials in a row; None: never.
    max_consecutive_failures: int = _field(3, "Stop (resumably) after this many failed trials "
                                              "in a row (None: never).")
    # Print nothing but errors.
    quiet: bool = _field(False, "Print only errors.", cli={"action": "store_true"})
    # -- a distributed search --------------------------------------------------------
    # The chief's HOST:PORT: alone, be the chief; with `worker`, the chief's address.
    chief: str = _field(None, "Distributed search: alone, be the chief listening on "
                              "HOST:PORT (0.0.0.0 for every interface); with --worker, the "
                              "chief's address.", cli={"metavar": "HOST:PORT"})
    # This worker's ID; started again with the same ID, it gets its unfinished trial back.
    worker: str = _field(None, "Distributed search: be worker ID (needs --chief). Start a "
                               "worker again with the same ID to get its unfinished trial "
                               "back.", cli={"metavar": "ID"})
    # The chief's patience with a silent worker, in seconds; None: wait forever.
    worker_timeout: float = _field(300.0, "Distributed search, chief: hand a running trial "
                                          "to another worker when nothing has been heard of "
                                          "it for this many seconds (its worker has died; "
                                          "live workers report every 30 s, so at least 60). "
                                          "0 on the command line, None here: wait forever.",
                                   cli={"type": _parse_worker_timeout, "metavar": "SECONDS"})
    # Local workers: be the chief on loopback and start this many workers here.
    workers: int = _field(None, "Distributed search on this machine: be the chief on "
                                "loopback and start N workers, each with its share of the "
                                "cores (their output in OUT/workers/).",
                          cli={"type": int, "metavar": "N"})

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: the checked values replace the given ones
        v.check_choice("tuner", self.tuner, TUNER_NAMES)
        for name, low in (("max_trials", 1), ("epochs", 1), ("seed", 0), ("batch_size", 1)):
            set_(self, name, v.check_int(name, getattr(self, name), low=low))
        set_(self, "num_samples", v.check_int("num_samples", self.num_samples, low=1,
                                              allow_none=True))
        v.check_choice("objective", self.objective, OBJECTIVES)
        v.check_choice("precision", self.precision, PRECISIONS)
        v.check_choice("distribution", self.distribution, DISTRIBUTIONS)
        v.check_choice("color_mode", self.color_mode, COLOR_MODES)
        if not (self.jit == "auto" or isinstance(self.jit, bool)):
            v.fail("Expected `jit` to be 'auto', True or False.", "jit", self.jit)
        for name in ("overwrite", "export", "quiet", "skip_bad_images", "cache_features"):
            v.check_bool(name, getattr(self, name))
        from cnnzoo import transfer

        set_(self, "fine_tune_epochs", transfer.check_requirements(
            self.weights, self.fine_tune_epochs, self.unfreeze, self.fine_tune_learning_rate))
        set_(self, "max_consecutive_failures", v.check_int(
            "max_consecutive_failures", self.max_consecutive_failures, low=1,
            allow_none=True))
        set_(self, "out", os.path.abspath(v.check_output_folder("out", self.out)))
        from cnnzoo import runtime
        from tuning import distributed

        set_(self, "threads", runtime.check_threads(self.threads))
        set_(self, "worker_timeout", distributed.check_worker_timeout(self.worker_timeout))
        set_(self, "workers", v.check_int("workers", self.workers, low=1, allow_none=True))
        if self.workers is not None and (self.chief is not None or self.worker is not None):
            v.fail("Expected `workers` alone: it starts a chief and its workers on this "
                   "machine (--chief and --worker are for machines of their own).", "workers",
                   self.workers)
        _check_hypermodel_kwargs(self.hypermodel_kwargs)
        recipes.check_recipe(self)
        recipes.check_epochs(self, self.epochs)

    def __repr__(self):
        # Data in memory is described (`ndarray(shape=..., dtype=...)`), never printed.
        fields = ", ".join(f"{f.name}={v.describe(getattr(self, f.name))}"
                           for f in dataclasses.fields(self))
        return f"SearchConfig({fields})"

    # -- what is derived from the fields ---------------------------------------------

    def recipe(self):
        """The training recipe of every trial, a `cnnzoo.recipe.Recipe`."""
        return recipes.Recipe(**{f.name: getattr(self, f.name) for f in recipes.fields()})

    def recorded(self):
        """The settings `search.json` holds (see `identity_fields`), JSON-ready."""
        out = {}
        for f in dataclasses.fields(self):
            if not f.metadata["record"]:
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            if f.name in ("data", "validation_data") and not isinstance(
                    value, (str, os.PathLike, type(None))):
                # In memory: `tuning.driver` records them once loaded (`cnnzoo.data.record`).
                value = v.describe(value)
            elif f.name == "data" and os.path.exists(value):
                value = os.path.abspath(value)
            out[f.name] = value
        return out


def identity_fields():
    """The settings a resumed search, and every worker, must share with the search."""
    return tuple(f.name for f in dataclasses.fields(SearchConfig) if f.metadata["identity"])


def card_fields():
    """The settings the exported model card's search section holds."""
    return tuple(f.name for f in dataclasses.fields(SearchConfig) if f.metadata["card"])


def defaults():
    """`{name: default}` of every setting."""
    return {f.name: f.default for f in dataclasses.fields(SearchConfig)}


def _check_hypermodel_kwargs(kwargs):
    if kwargs is None:
        return
    if not isinstance(kwargs, dict):
        v.fail("Expected `hypermodel_kwargs` to be a dict of ZooHyperModel arguments.",
               "hypermodel_kwargs", kwargs)
    # What the search passes to ZooHyperModel itself.
    taken = sorted(set(kwargs) & {"input_shape", "num_classes", "input_size", "jit_compile",
                                  "weights", "features", "fine_tune_epochs", "unfreeze",
                                  "fine_tune_learning_rate", "recipe", "steps_per_epoch",
                                  "epochs"})
    if taken:
        v.fail(f"Expected `{taken[0]}` from the search, not in `hypermodel_kwargs` (pass "
               f"input_size, jit, weights, epochs and the recipe's settings to search() "
               f"itself; the data sets the others).", "hypermodel_kwargs", kwargs)
    from tuning.hypermodel import ZooHyperModel

    known = set(inspect.signature(ZooHyperModel).parameters) - {"model_name"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        v.fail(f"Expected ZooHyperModel arguments in `hypermodel_kwargs`; `{unknown[0]}` is "
               f"not one (they are {', '.join(sorted(known))}).", "hypermodel_kwargs", kwargs)


# -- the command line ------------------------------------------------------------------


def add_arguments(parser):
    """Adds one option per setting that has `cli` metadata (and `HYPERMODEL_FLAGS`)."""
    for f in dataclasses.fields(SearchConfig):
        spec = f.metadata["cli"]
        if spec is None:
            continue
        spec = dict(spec)
        flag = spec.pop("flag", "--" + f.name.replace("_", "-"))
        text = spec.pop("help", f.metadata["help"])
        if spec.get("action") is None and f.default is not None and "Default" not in text:
            shown = "./" + f.default if f.name == "out" else f.default
            text = f"{text} Default: {shown}."
        parser.add_argument(flag, dest=f.name, default=f.default, help=text, **spec)
    for name, (flag, text) in HYPERMODEL_FLAGS.items():
        parser.add_argument(flag, dest=f"hypermodel_{name}", action="store_true", help=text)


def from_arguments(args):
    """The `SearchConfig` of parsed command-line arguments (checked)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SearchConfig)
              if f.metadata["cli"] is not None}
    switches = {name: True for name in HYPERMODEL_FLAGS if getattr(args, f"hypermodel_{name}")}
    return SearchConfig(**values, hypermodel_kwargs=switches or None)


# -- search()'s signature and docstring -------------------------------------------------

# What `search` takes besides the settings: objects, not settings.
OBJECTS = {
    "hypermodel": "a ready `keras_tuner.HyperModel` (or a `build(hp)` function) to search "
                  "instead of building a `ZooHyperModel` (its model must take the dataset's "
                  "images).",
    "tuner_class": "the tuner class (see `tuning.tuners.make_tuner`).",
    "stream": "where progress goes. Defaults to `sys.stdout`.",
}
# Positional as well as keyword (as `search(model, data)` has always been).
POSITIONAL = ("model", "data")


def signature():
    """`search()`'s signature: the settings (model and data first) and `OBJECTS`."""
    params = []
    for f in dataclasses.fields(SearchConfig):
        kind = (inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name in POSITIONAL
                else inspect.Parameter.KEYWORD_ONLY)
        params.append(inspect.Parameter(f.name, kind, default=f.default))
    params.sort(key=lambda p: p.kind)  # positional ones first, as Python requires
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
               for name in OBJECTS]
    return inspect.Signature(params)


def args_doc(indent=8):
    """The `Args:` lines of `search()`'s docstring, from the fields' help."""
    lines = []
    entries = [(f.name, f.metadata["help"], f.default) for f in dataclasses.fields(SearchConfig)]
    entries += [(name, text, None) for name, text in OBJECTS.items()]
    for name, text, default in entries:
        if default is not None and "Default" not in text:
            text = f"{text} Defaults to `{default!r}`."
        lines += textwrap.wrap(f"{name}: {text}", width=88, initial_indent=" " * indent,
                               subsequent_indent=" " * (indent + 4))
    return "\n".join(lines)
