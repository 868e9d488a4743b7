"""Augmentation policies from `keras.layers` preprocessing layers.

`augmentation(policy, ...)` is an `Augmentation` (a `keras.Sequential`)
named `augment` that the classifier applies to its raw images first
(`cnnzoo.pipeline.build_classifier`): inside the model, so inside the
compiled training step on every backend (no `tf.data` map, which JAX would
not run). Keras's random preprocessing layers default to `training=True`
when called without it; `Augmentation` defaults to `False`, as
`keras.layers.Dropout` does, so that `model(x)`, as `evaluate` and
`predict`, leaves the images as they are, and only `fit` augments. Exports
leave the layer out altogether (`strip`). Each layer draws from a
`keras.random.SeedGenerator` whose state is a variable of the model, so a
seeded run augments the same way every time, and a resumed run as an
uninterrupted one.

The policies, for small image data sets (pixels 0-255), each after the
recipe's random flip (`flip`, `keras.layers.RandomFlip`'s mode; `"none"`
leaves it out):

- `light`: translation up to 10%;
- `default`: translation 10%, zoom 10%, rotation up to 18 degrees (0.05 of
  a turn), contrast 10%;
- `strong`: the same ranges doubled (translation 20%, zoom 20%, rotation 36
  degrees, contrast 30%) and brightness 20%;
- `randaugment`: `keras.layers.RandAugment` (two operations, magnitude
  0.5), RGB images only.

The flip defaults to horizontal, the photographs' convention (Keras's
examples, timm's `hflip`); no policy flips vertically unless asked. A
mirrored digit or letter is another symbol or none, so for digits, text and
anything else a mirror changes, choose `flip="none"` (`--flip none`): the
policies stay generic rather than guessing from the data's name.
"""

import keras

from cnnzoo import _validation as v
from cnnzoo.recipe import AUGMENTATIONS, FLIPS

LAYER_NAME = "augment"
VALUE_RANGE = (0.0, 255.0)


@keras.saving.register_keras_serializable(package="cnnzoo")
class Augmentation(keras.Sequential):
    """A `keras.Sequential` of random preprocessing layers, active in training only.

    Keras's random preprocessing layers augment when called without
    `training`; this changes its input only when `training=True` (as
    `keras.layers.Dropout`), so that calling the classifier on images
    predicts, as `predict` does.

    Call arguments:
        inputs: a batch of images.
        training: whether to augment. Defaults to `False`.
    """

    def call(self, inputs, training=False, mask=None, **kwargs):
        return super().call(inputs, training=bool(training), mask=mask, **kwargs)


def _policy_layers(policy, channels, seed, flip, value_range):
    L = keras.layers

    def kw(i, name):
        # Layer i's seed stays the same whether or not the flip is there.
        return {"seed": None if seed is None else int(seed) + i, "name": f"{LAYER_NAME}_{name}"}

    if policy == "none":
        return []
    out = [] if flip == "none" else [L.RandomFlip(flip, **kw(0, "flip"))]
    if policy == "light":
        return out + [L.RandomTranslation(0.1, 0.1, fill_mode="nearest", **kw(1, "translation"))]
    scale = {"default": 1.0, "strong": 2.0}.get(policy)
    if scale is not None:
        out += [
            L.RandomTranslation(0.1 * scale, 0.1 * scale, fill_mode="nearest",
                                **kw(1, "translation")),
            L.RandomZoom(0.1 * scale, fill_mode="nearest", **kw(2, "zoom")),
            L.RandomRotation(0.05 * scale, fill_mode="nearest", **kw(3, "rotation")),
            L.RandomContrast(0.1 if policy == "default" else 0.3, value_range=value_range,
                             **kw(4, "contrast")),
        ]
        if policy == "strong":
            out.append(L.RandomBrightness(0.2, value_range=value_range, **kw(5, "brightness")))
        return out
    if policy == "randaugment":
        if channels != 3:
            v.fail(f"Expected RGB images for `augment='randaugment'` (keras.layers.RandAugment's "
                   f"colour operations); these have {channels} channel(s) (convert them with "
                   f"color_mode='rgb', or choose another policy).", "augment", policy)
        return out + [L.RandAugment(value_range=value_range, num_ops=2, factor=0.5,
                                    **kw(1, "randaugment"))]
    raise AssertionError(policy)  # every name of AUGMENTATIONS is built above


def augmentation(policy, *, input_shape, seed=None, flip="horizontal", value_range=VALUE_RANGE):
    """The policy's layers as one `Augmentation` named `augment` (`None` for `"none"`).

    Args:
        policy: one of `cnnzoo.recipe.AUGMENTATIONS`.
        input_shape: `(height, width, channels)` of the raw images.
        seed: seeds the layers' generators (layer `i` gets `seed + i`).
            Defaults to `None`: drawn from Keras's global seed
            (`keras.utils.set_random_seed`).
        flip: the random flip before the policy: `keras.layers.RandomFlip`'s
            mode, or `"none"`. Defaults to `"horizontal"`.
        value_range: the pixels' `(low, high)`, for the colour operations.
            Defaults to `(0, 255)`, the classifier's raw images.

    Returns:
        An `Augmentation`, or `None` when the policy is `"none"`.
    """
    v.check_choice("augment", policy, AUGMENTATIONS)
    v.check_choice("flip", flip, FLIPS)
    layers = _policy_layers(policy, int(input_shape[-1]), seed, flip, tuple(value_range))
    if not layers:
        return None
    return Augmentation([keras.Input(shape=tuple(input_shape)), *layers], name=LAYER_NAME)


def strip(model):
    """`model` without its `augment` layer (the same layers and weights, uncompiled).

    `model` itself where it has no such layer. For exports: the
    classifier's augmentation does nothing at inference, but its random
    layers (and their seed states) have no place in a served model. The classifier is a chain of layers from `images`, so
    the rest is called again on a new input of the same name.
    """
    names = [layer.name for layer in model.layers]
    if LAYER_NAME not in names:
        return model
    inputs = keras.Input(shape=model.inputs[0].shape[1:], name=model.inputs[0].name,
                         dtype=model.inputs[0].dtype)
    x = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or layer.name == LAYER_NAME:
            continue
        x = layer(x)
    # Uncompiled: what is served is not trained further.
    return keras.Model(inputs, x, name=model.name)
