"""Fine-tuning a pretrained backbone: the two-phase recipe, and the frozen part's features.

The recipe of Keras's transfer-learning guide and of timm's fine-tuning
practice, for any zoo model with pretrained weights:

1. the backbone frozen (its layers `trainable=False`, so batch norm runs in
   inference mode), a new head trained at the run's learning rate;
2. optionally, the top `unfreeze` stages trainable again, batch norm still
   frozen (in inference mode: its statistics stay the pretrained ones, as
   timm's `freeze_batch_norm_2d`), at a lower learning rate, with a new
   optimizer for the new trainable set.

The model is built once with `tunable_dropout=True`: every dropout is a
`cnnzoo.layers.VariableDropout` whose rate lives in a variable. Phase 1
keeps every block rate at 0, so that the frozen backbone is a fixed function
of each image (what lets a search compute its features once,
`feature_extractor`); phase 2 gives the unfrozen stages their block rate.
Both phases have the same variables; only the optimizer changes.

The split: the backbone is every layer of the zoo model up to and including
its global pooling (or `flatten`); the head is what follows (head dropout,
VGG's fully connected layers, the classifier). A family declares its stages
by layer-name prefixes (`register_model(stage_layers=...)`).
"""

import dataclasses

from cnnzoo import _validation as v

# The layer that ends a zoo model's backbone: its global pooling, or VGG's flatten.
BACKBONE_ENDS = ("avg_pool", "max_pool", "flatten")
# The fine-tuning learning rate, as a fraction of the first phase's.
FINE_TUNE_LR_FACTOR = 0.1


@dataclasses.dataclass(frozen=True)
class Plan:
    """A fine-tuning plan: what phase 2 does (phase 1 always trains the head alone).

    Attributes:
        fine_tune_epochs: epochs of phase 2 (0: none).
        unfreeze: `"all"` (the whole backbone) or the number of top stages.
        fine_tune_learning_rate: phase 2's learning rate.
        block_dropout_rate: the unfrozen stages' dropout in phase 2: one
            float, or one per stage (0 for the frozen ones).
    """

    fine_tune_epochs: int = 0
    unfreeze: object = "all"
    fine_tune_learning_rate: float = None
    block_dropout_rate: object = 0.0

    def config(self):
        """What `run.json` and the model card record."""
        return {"phases": 2 if self.fine_tune_epochs else 1,
                "head_epochs_backbone": "frozen, batch norm in inference mode",
                "fine_tune_epochs": self.fine_tune_epochs,
                "unfreeze": self.unfreeze if self.fine_tune_epochs else None,
                "fine_tune_learning_rate": (self.fine_tune_learning_rate
                                            if self.fine_tune_epochs else None),
                "batch_norm": "frozen (inference mode) in both phases"}

    def stage_rates(self, info):
        """Phase 2's block rate of each stage: the unfrozen stages' rate, 0 elsewhere."""
        stages = info["stages"]
        if not self.fine_tune_epochs:
            return [0.0] * stages
        rates = (list(self.block_dropout_rate)
                 if isinstance(self.block_dropout_rate, (list, tuple))
                 else [float(self.block_dropout_rate)] * stages)
        top = unfrozen_stages(info, self.unfreeze)
        return [float(r) if s in top else 0.0 for s, r in enumerate(rates)]


def check_plan(model_name, *, weights, fine_tune_epochs=0, unfreeze=None,
               fine_tune_learning_rate=None, learning_rate, block_dropout_rate=None,
               drop_path_rate=None):
    """Checks the fine-tuning arguments; returns a `Plan` (`None` without weights).

    Every refusal is a `ValueError` raised before any work.
    """
    from cnnzoo.models._registry import model_info

    info = model_info(model_name)
    fine_tune_epochs = check_requirements(weights, fine_tune_epochs, unfreeze,
                                          fine_tune_learning_rate)
    if weights is None:
        return None
    if drop_path_rate:
        v.fail("Expected no `drop_path_rate` with `weights`: the frozen backbone must be a "
               "fixed function of each image; the unfrozen stages' regulariser is "
               "`block_dropout_rate`.", "drop_path_rate", drop_path_rate)
    unfreeze = check_unfreeze(model_name, info, "all" if unfreeze is None else unfreeze)
    rate = 0.0 if block_dropout_rate is None else block_dropout_rate
    if not fine_tune_epochs and (max(rate) if isinstance(rate, (list, tuple)) else rate):
        v.fail("Expected `fine_tune_epochs` with `block_dropout_rate`: with `weights` the "
               "blocks are frozen in the first phase (no dropout in them); their dropout "
               "applies to the stages unfrozen for fine-tuning.", "block_dropout_rate",
               block_dropout_rate)
    if fine_tune_learning_rate is None:
        fine_tune_learning_rate = learning_rate * FINE_TUNE_LR_FACTOR
    fine_tune_learning_rate = v.check_number("fine_tune_learning_rate", fine_tune_learning_rate,
                                             low=0.0, low_inclusive=False)
    return Plan(fine_tune_epochs, unfreeze, float(fine_tune_learning_rate), rate)


def check_requirements(weights, fine_tune_epochs, unfreeze, fine_tune_learning_rate):
    """Refuses a fine-tuning setting without what it needs; returns `fine_tune_epochs` as an int.

    `fine_tune_epochs` needs `weights`; `unfreeze` and
    `fine_tune_learning_rate` need `fine_tune_epochs` (and so `weights`).
    """
    fine_tune_epochs = v.check_int("fine_tune_epochs", fine_tune_epochs or 0, low=0)
    for name, value in (("fine_tune_epochs", fine_tune_epochs or None),
                        ("unfreeze", unfreeze),
                        ("fine_tune_learning_rate", fine_tune_learning_rate)):
        if value is not None and weights is None:
            v.fail(f"Expected `weights` with `{name}`: fine-tuning starts from pretrained "
                   f"weights (a model trained from scratch has nothing to freeze).", name,
                   value)
        if value is not None and name != "fine_tune_epochs" and not fine_tune_epochs:
            v.fail(f"Expected `fine_tune_epochs` with `{name}`: it sets the fine-tuning "
                   f"phase, which runs only for fine_tune_epochs > 0.", name, value)
    return fine_tune_epochs


def default_input_size(model_name, weights, raw_input_shape):
    """The weights' training size where the images are of another size, else `None`.

    A file in a publisher's layout has that layout's set's size; a cnnzoo
    file has none.
    """
    from cnnzoo import weights as pretrained
    from cnnzoo.models._registry import model_info

    request = pretrained.resolve(model_name, model_info(model_name), weights)
    trained = (request["spec"] or {}).get("input_size")
    if trained and tuple(raw_input_shape[:2]) != (trained, trained):
        return trained
    return None


def check_unfreeze(model_name, info, unfreeze):
    """`"all"`, or a number of top stages between 1 and the model's stages."""
    stages = info["stages"]
    if isinstance(unfreeze, str) and unfreeze != "all":
        try:
            unfreeze = int(unfreeze)
        except ValueError:
            pass
    if unfreeze == "all":
        return "all"
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, int) \
            or not 1 <= unfreeze <= stages:
        v.fail(f"Expected `unfreeze` to be 'all' or a number of top stages from 1 to "
               f"{stages} (`{model_name}` has {stages}).", "unfreeze", unfreeze)
    if info["stage_layers"] is None:
        v.fail(f"`{model_name}` does not declare its stages' layers, so only unfreeze='all' "
               f"is possible.", "unfreeze", unfreeze)
    return unfreeze


def unfrozen_stages(info, unfreeze):
    """The indices of the stages phase 2 trains."""
    stages = info["stages"]
    return set(range(stages)) if unfreeze == "all" else set(range(stages - unfreeze, stages))


# -- the model's parts --------------------------------------------------------------


def zoo_body(model):
    """The zoo model inside a `cnnzoo.pipeline.build_classifier` model (or the model itself)."""
    import keras

    from cnnzoo.recipe.augment import Augmentation

    # The augmentation is a `keras.Sequential` too, before the zoo model.
    inner = [layer for layer in model.layers
             if isinstance(layer, keras.Model) and not isinstance(layer, Augmentation)]
    return inner[0] if len(inner) == 1 else model


def split_index(body):
    """The index in `body.layers` of the layer that ends the backbone (its pooling or flatten)."""
    for i, layer in enumerate(body.layers):
        if layer.name in BACKBONE_ENDS:
            return i
    raise ValueError(f"Expected a zoo model whose backbone ends in one of {BACKBONE_ENDS}. "
                     f"Received: model={body.name}")


def stage_of(info, layer_name):
    """The stage a backbone layer belongs to, or `None` for the stem."""
    for s, prefixes in enumerate(info["stage_layers"] or ()):
        if layer_name.startswith(prefixes):
            return s
    return None


def set_phase(model, model_name, phase, plan):
    """Sets which layers train and the block dropout rates for `phase` (1 or 2).

    Phase 1: the backbone frozen, every block rate 0. Phase 2: the unfrozen
    stages (the whole backbone with `unfreeze="all"`) trainable except
    their batch norm, at `plan`'s block rates. The head trains in both, at
    the head rate it was built with. Compile afterwards: the trainable set
    is read when the model is compiled.
    """
    import keras

    from cnnzoo.layers.variable_dropout import VariableDropout
    from cnnzoo.models._registry import model_info

    info = model_info(model_name)
    body = zoo_body(model)
    end = split_index(body)
    rates = plan.stage_rates(info) if phase == 2 else [0.0] * info["stages"]
    top = unfrozen_stages(info, plan.unfreeze) if phase == 2 else set()
    for layer in body.layers[:end + 1]:
        stage = stage_of(info, layer.name)
        unfrozen = phase == 2 and (plan.unfreeze == "all" or stage in top)
        layer.trainable = unfrozen and not isinstance(layer, keras.layers.BatchNormalization)
        if isinstance(layer, VariableDropout):
            layer.rate = rates[stage] if stage is not None else 0.0
    for layer in body.layers[end + 1:]:
        layer.trainable = True
    return model


def frozen_end(model, model_name, unfreeze):
    """The name of the body layer whose output feeds the stages any of `unfreeze` trains.

    `unfreeze` is a list of `"all"` or stage counts (the choices of a
    search). Everything up to that layer stays frozen in both phases, in
    inference mode with no dropout: a fixed function of each image, whose
    output can be computed once (`feature_extractor(model, end=...)`).
    Returns `None` where every stage may train (`"all"`). A dropout layer
    is never the end: a model built with plain dropout leaves those at
    rate 0 out, and the end must be in both.
    """
    import keras

    from cnnzoo import layers
    from cnnzoo.models._registry import model_info

    if "all" in unfreeze:
        return None
    info = model_info(model_name)
    first = min(min(unfrozen_stages(info, int(u))) for u in unfreeze)
    body = zoo_body(model)
    end = None
    for layer in body.layers:
        stage = stage_of(info, layer.name)
        if stage is not None and stage >= first:
            return end
        if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout,
                                  keras.layers.SpatialDropout2D, layers.Dropout,
                                  layers.VariableDropout)):
            end = layer.name
    raise ValueError(f"Expected a zoo model with stage {first + 1}. Received: model={body.name}")


def head_model(model, start=None):
    """The part of a zoo classifier after `start` as a model of its own.

    It shares its layers (and so its weights) with `model`: training it
    trains `model`'s. Its input is what `feature_extractor(model, start)`
    computes.

    Args:
        model: a `cnnzoo.pipeline.build_classifier` model (or a zoo model).
        start: the name of the body layer whose output is the input.
            Defaults to the end of the backbone (its pooling or flatten):
            the head alone.
    """
    import keras

    body = zoo_body(model)
    if start is None:
        start = body.layers[split_index(body)].name
    cut = body.get_layer(start).output
    inner = keras.Model(cut, body.outputs[0], name=f"{body.name}_after_{start}")
    features = keras.Input(shape=tuple(cut.shape[1:]), name="features")
    x = inner(features)
    if body is not model:
        for layer in model.layers[model.layers.index(body) + 1:]:
            x = layer(x)
    return keras.Model(features, x, name=f"{body.name}_head")


def feature_extractor(model, end=None):
    """`model` up to the body layer `end`: images in, that layer's output out.

    `end` defaults to the end of the backbone: its pooled (or flattened)
    features.
    """
    import keras

    body = zoo_body(model)
    if end is None:
        end = body.layers[split_index(body)].name
    trunk = keras.Model(body.inputs, body.get_layer(end).output, name=f"{body.name}_backbone")
    if body is model:
        return trunk
    images = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name="images")
    x = images
    for layer in model.layers[1:model.layers.index(body)]:
        x = layer(x)
    return keras.Model(images, trunk(x), name=f"{body.name}_features")


def copy_weights(source, target):
    """Assigns `source`'s weights to `target`, leaving out `VariableDropout`'s own.

    `target` is the same architecture built with plain dropout layers (no
    layer at rate 0); raises a `ValueError` when the two do not line up.
    """
    from cnnzoo.layers.variable_dropout import VariableDropout

    skip = set()
    for layer in _all_layers(source):
        if isinstance(layer, VariableDropout):
            skip.update(id(w) for w in layer.weights)
    weights = [w for w in source.weights if id(w) not in skip]
    if len(weights) != len(target.weights) or any(
            tuple(a.shape) != tuple(b.shape) for a, b in zip(weights, target.weights)):
        v.fail("Expected a model of the same architecture to copy the weights into.", "model",
               target.name)
    for to, value in zip(target.weights, weights):
        to.assign(value)
    return target


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
