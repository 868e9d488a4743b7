"""A zoo model wrapped to take raw images: resize and rescale inside the model.

Training, tuning and export all build through `build_classifier`, so an
exported model takes raw pixels (0-255) and the preprocessing travels with it.
"""

from cnnzoo import _validation as v
from cnnzoo._lazy import keras


def model_input_size(model_name, raw_input_shape, input_size=None):
    """`(raw_input_shape, (height, width))`: the raw shape, and the size the zoo model sees.

    `input_size` as in `build_classifier`; a size below the model's minimum
    is a `ValueError` that names `input_size`.
    """
    import cnnzoo

    raw = v.check_input_shape("raw_input_shape", raw_input_shape)
    least = cnnzoo.model_info(model_name)["min_input_size"]
    if input_size is None:
        return raw, (max(raw[0], least), max(raw[1], least))
    if isinstance(input_size, (list, tuple)):
        size = tuple(v.check_int("input_size", s, low=1) for s in input_size)
        if len(size) != 2:
            v.fail("Expected `input_size` as one int or (height, width).", "input_size",
                   input_size)
    else:
        size = (v.check_int("input_size", input_size, low=1),) * 2
    if min(size) < least:
        v.fail(f"Expected an `input_size` of at least {least}x{least} for `{model_name}` "
               f"(its minimum, from the architecture's total stride).", "input_size",
               input_size)
    return raw, size


def resize_reason(model_name, raw_size, size, weights=None):
    """Why raw `(height, width)` images are resized to `size` inside the model, in words.

    `None` where they are not; `"vgg16's minimum"` where `size` is the raw
    size raised to the model's minimum input; with pretrained `weights`,
    `"the weights' training size"` where `size` is theirs
    (`cnnzoo.transfer.default_input_size`); `"input_size"` where it was
    asked for.
    """
    import cnnzoo

    raw, size = tuple(int(n) for n in raw_size[:2]), tuple(int(n) for n in size[:2])
    if raw == size:
        return None
    if weights is not None:
        from cnnzoo import transfer

        if (transfer.default_input_size(model_name, weights, raw),) * 2 == size:
            return "the weights' training size"
    least = (cnnzoo.model_info(model_name)["min_input_size"]
             if model_name in cnnzoo.list_models() else None)
    if least and size == (max(raw[0], least), max(raw[1], least)):
        return f"{model_name}'s minimum"
    return "input_size"


def describe_resize(model_name, raw_size, size, weights=None, unchanged="fed as they are"):
    """`"8x8 images, resized to 32x32 inside the model: vgg16's minimum"` (or `fed as they are`).

    `weights`: the pretrained weights, as `resize_reason`'s. `unchanged`:
    what follows the size where the images are not resized (`None`: then
    return `None`).
    """
    text = f"{int(raw_size[0])}x{int(raw_size[1])} images"
    why = resize_reason(model_name, raw_size, size, weights=weights)
    if why is None:
        return None if unchanged is None else f"{text}, {unchanged}"
    return f"{text}, resized to {int(size[0])}x{int(size[1])} inside the model: {why}"


def build_classifier(model_name, raw_input_shape, num_classes, *, input_size=None,
                     scale=1.0 / 255.0, augment="none", augment_seed=None,
                     augment_flip="horizontal", **zoo_kwargs):
    """Builds `images (raw) -> [augment] -> [Resizing] -> Rescaling -> zoo model -> probabilities`.

    Args:
        model_name: a name from `cnnzoo.list_models()`.
        raw_input_shape: `(height, width, channels)` of the raw images.
        num_classes: number of classes.
        input_size: `(height, width)` (or one int) the zoo model sees; the
            raw images are resized to it inside the model. Defaults to the raw
            size, raised to the model's minimum where it is smaller.
        scale: the factor that maps raw pixels to [0, 1]. Not applied with
            pretrained `weights`: their `Preprocessing` layer inside the zoo
            model takes the raw pixels.
        augment: an augmentation policy (`cnnzoo.recipe.augment`): a layer
            `augment` on the raw images that changes them in training only.
            Defaults to `"none"` (no layer).
        augment_seed: seeds the augmentation's layers. Defaults to `None`
            (Keras's global seed).
        augment_flip: the augmentation's random flip (`keras.layers.RandomFlip`'s
            mode, or `"none"`). Defaults to `"horizontal"`.
        **zoo_kwargs: passed to `cnnzoo.create_model` (`weights` too).

    Returns:
        An uncompiled `keras.Model` named after the zoo model, whose input
        is called `images` and whose output is called `probabilities`.
    """
    import cnnzoo

    raw, size = model_input_size(model_name, raw_input_shape, input_size)
    body = cnnzoo.create_model(model_name, input_shape=size + (raw[2],),
                               num_classes=num_classes, **zoo_kwargs)
    inputs = keras.Input(shape=raw, name="images")
    x = inputs
    if augment != "none":
        from cnnzoo.recipe.augment import augmentation

        x = augmentation(augment, input_shape=raw, seed=augment_seed, flip=augment_flip)(x)
    if size != raw[:2]:
        x = keras.layers.Resizing(size[0], size[1], name="resize")(x)
    if zoo_kwargs.get("weights") is None:
        # Pretrained weights bring their own preprocessing of raw pixels: no
        # second rescale.
        x = keras.layers.Rescaling(scale, name="rescale")(x)
    x = body(x)
    # An identity layer named `probabilities`, so serving signatures get a stable name.
    outputs = keras.layers.Activation("linear", name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{model_name}_classifier")
