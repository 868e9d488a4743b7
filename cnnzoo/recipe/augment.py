"""Augmentation policies from `keras.layers` preprocessing layers.

`augmentation(policy, ...)` is a `keras.Sequential` named `augment` that the
classifier applies to its raw images first (`cnnzoo.pipeline.build_classifier`):
inside the model, so inside the compiled training step on every backend
(no `tf.data` map, which JAX would not run). Keras's random preprocessing
layers change their input only when called with `training=True`: `fit`
augments, `evaluate` and `predict` do not, and exports leave the layer out
altogether (`strip`). Each layer draws from a `keras.random.SeedGenerator`
whose state is a variable of the model, so a seeded run augments the same
way every time, and a resumed run as an uninterrupted one.

The policies, for small image data sets (pixels 0-255):

- `light`: horizontal flip, translation up to 10%;
- `default`: horizontal flip, translation 10%, zoom 10%, rotation up to
  18 degrees (0.05 of a turn), contrast 10%;
- `strong`: the same ranges doubled (translation 20%, zoom 20%, rotation 36
  degrees, contrast 30%) and brightness 20%;
- `randaugment`: `keras.layers.RandAugment` (two operations, magnitude
  0.5), RGB images only, after a horizontal flip.
"""

import keras

from cnnzoo import _validation as v
from cnnzoo.recipe import AUGMENTATIONS

LAYER_NAME = "augment"
VALUE_RANGE = (0.0, 255.0)


def _policy_layers(policy, channels, seed):
    L = keras.layers

    def seeded(i):
        return None if seed is None else int(seed) + i

    if policy == "light":
        return [L.RandomFlip("horizontal", seed=seeded(0)),
                L.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seeded(1))]
    scale = {"default": 1.0, "strong": 2.0}.get(policy)
    if scale is not None:
        out = [L.RandomFlip("horizontal", seed=seeded(0)),
               L.RandomTranslation(0.1 * scale, 0.1 * scale, fill_mode="nearest",
                                   seed=seeded(1)),
               L.RandomZoom(0.1 * scale, fill_mode="nearest", seed=seeded(2)),
               L.RandomRotation(0.05 * scale, fill_mode="nearest", seed=seeded(3)),
               L.RandomContrast(0.1 if policy == "default" else 0.3,
                                value_range=VALUE_RANGE, seed=seeded(4))]
        if policy == "strong":
            out.append(L.RandomBrightness(0.2, value_range=VALUE_RANGE, seed=seeded(5)))
        return out
    if policy == "randaugment":
        if channels != 3:
            v.fail(f"Expected RGB images for `augment='randaugment'` (keras.layers.RandAugment's "
                   f"colour operations); these have {channels} channel(s) (convert them with "
                   f"color_mode='rgb', or choose another policy).", "augment", policy)
        return [L.RandomFlip("horizontal", seed=seeded(0)),
                L.RandAugment(value_range=VALUE_RANGE, num_ops=2, factor=0.5, seed=seeded(1))]
    return []


def augmentation(policy, *, input_shape, seed=None):
    """The policy's layers as one `keras.Sequential` named `augment` (`None` for `"none"`).

    Args:
        policy: one of `cnnzoo.recipe.AUGMENTATIONS`.
        input_shape: `(height, width, channels)` of the raw images.
        seed: seeds the layers' generators (layer `i` gets `seed + i`).
            Defaults to `None`: drawn from Keras's global seed
            (`keras.utils.set_random_seed`).

    Returns:
        A `keras.Sequential`, or `None` when the policy is `"none"`.
    """
    v.check_choice("augment", policy, AUGMENTATIONS)
    layers = _policy_layers(policy, int(input_shape[-1]), seed)
    if not layers:
        return None
    return keras.Sequential([keras.Input(shape=tuple(input_shape)), *layers], name=LAYER_NAME)


def strip(model):
    """`model` without its `augment` layer (the same layers and weights, uncompiled).

    `model` itself where it has no such layer. For exports: the
    classifier's augmentation does nothing at inference, but its random layers (and their seed states) have no place in a
    served model. The classifier is a chain of layers from `images`, so
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
