"""Pretrained weights: which sets exist, where they come from, and loading them exactly.

`cnnzoo.create_model(name, weights=...)` is the entry point; this package
resolves the request (`resolve`, no Keras import, no network), and after the
model is built, fetches the file (`sources`), reads it (`readers`) and
converts it (`convert`). Sets are declared as data in each model file
(`cnnzoo.weights.sets`).
"""

import logging
import os
import warnings

from cnnzoo import _validation as v

logger = logging.getLogger("cnnzoo.weights")
# The hidden activation each family's published weights were trained with.
TRAINED_ACTIVATION = {"mobilenet_v2": "relu6"}


def models_with_weights():
    """The registered models that have at least one published weights set, sorted."""
    from cnnzoo.models._registry import list_models, model_info

    return [n for n in list_models() if model_info(n)["weights"]]


def resolve(name, info, weights):
    """What `weights=` asks for: `None`, or a dict describing the set or the file.

    Args:
        name: the model's name.
        info: its `model_info`.
        weights: `None`, `"imagenet"` (the first set), a set name, or a
            path to a local file.

    Returns:
        `None`, or `{"set": name or None, "path": local path or None,
        "layout": ..., "spec": the set's dict (for a file: the family's set
        of that layout, whose conventions and preprocessing it gets)}`.
    """
    if weights is None:
        return None
    sets = info["weights"]
    if not isinstance(weights, (str, os.PathLike)):
        v.fail("Expected `weights` to be None, 'imagenet', a weights set name or a file path.",
               "weights", weights)
    weights = os.fspath(weights)
    is_path = os.sep in weights or os.path.splitext(weights)[1] in (".h5", ".safetensors")
    if not is_path:
        if not sets:
            have = ", ".join(models_with_weights())
            v.fail(f"`{name}` has no published pretrained weights (cnnzoo converts only "
                   f"publishers' files). Models with weights: {have}.", "weights", weights)
        set_name = next(iter(sets)) if weights == "imagenet" else weights
        if set_name not in sets:
            v.fail(f"Expected `weights` for `{name}` to be None, 'imagenet', a file path, or "
                   f"one of its sets: {', '.join(sets)}.", "weights", weights)
        spec = sets[set_name]
        return {"set": set_name, "path": None, "layout": spec["layout"], "spec": spec}
    if not os.path.isfile(weights):
        v.fail("Expected `weights` to be an existing file (or a weights set name).", "weights",
               weights)
    from cnnzoo.weights.readers import detect_layout

    layout = detect_layout(weights)
    if layout == "cnnzoo":
        return {"set": None, "path": weights, "layout": layout, "spec": None}
    spec = next((s for s in sets.values() if s["layout"] == layout), None)
    if spec is None:
        v.fail(f"cnnzoo has no converter of the {layout} layout for `{name}`.", "weights",
               weights)
    return {"set": None, "path": weights, "layout": layout, "spec": spec}


def apply_conventions(name, request, kwargs):
    """The `create_model` keywords with the weights' conventions, and the `extra` they add.

    A convention that is also a keyword (`stride_in_1x1=True` for
    keras.applications' ResNet) is set, and refused when the caller asked
    for another value; the others (`padding="tensorflow"`, the
    preprocessing) go into `ZooConfig.extra`, so that the model is built the
    way the weights were trained.

    Returns:
        `(kwargs, extra)`.
    """
    if request is None or request["spec"] is None:
        return kwargs, {}
    spec = request["spec"]
    kwargs, extra = dict(kwargs), {}
    for key, value in spec["conventions"].items():
        if key == "padding":
            extra["padding"] = value
            continue
        if key in kwargs and kwargs[key] != value:
            v.fail(f"`{name}` with these weights needs `{key}={value!r}` (the architecture they "
                   f"were trained with).", key, kwargs[key])
        kwargs[key] = value
    extra["preprocessing"] = {k: val for k, val in spec["preprocessing"].items()
                              if k in ("mode", "mean", "std")}
    return kwargs, extra


def check_input(name, cfg, request):
    """Refuses an input size the weights fix (VGG's flatten head with its top)."""
    spec = request["spec"]
    if spec is None or not cfg.include_top:
        return
    if name.startswith("vgg") and request["path"] is None:
        size = spec["input_size"]
        if tuple(cfg.input_shape[:2]) != (size, size):
            v.fail(f"`{name}`'s fully connected head with weights '{request['set']}' takes "
                   f"{size}x{size} images: pass input_shape=({size}, {size}, "
                   f"{cfg.input_shape[2]}), or include_top=False (with pooling='avg') for "
                   f"another size.", "input_shape", cfg.input_shape)


def fetch(request, include_top):
    """The local path of the requested weights, downloaded into the publisher's cache if needed."""
    from cnnzoo.weights import sources

    if request["path"] is not None:
        return request["path"]
    spec = request["spec"]
    if spec["layout"] == "keras_applications":
        entry = spec["files"]["top" if include_top else "notop"]
        return sources.keras_file(entry["url"], entry["md5"])
    return sources.hub_file(spec["hub_id"], spec["filename"])


def load(model, name, cfg, request):
    """Loads the requested weights into a freshly built model, or raises before any assignment.

    The classifier is loaded only with the top at 1000 classes (else a new
    head is initialised, said once at info level); another hidden activation
    than the weights' warns once.
    """
    from cnnzoo.models._registry import model_info

    info = model_info(name)
    if request["layout"] == "cnnzoo":
        try:
            model.load_weights(request["path"])
        except Exception as e:  # noqa: BLE001  (Keras's errors are long and varied)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            v.fail(f"The weights file does not fit `{name}` as built with these arguments "
                   f"({first[:200]}).", "weights", request["path"])
        return model
    from cnnzoo.weights import convert, readers

    trained = TRAINED_ACTIVATION.get(info["family"], "relu")
    if cfg.activation != trained:
        warnings.warn(f"`{name}`'s weights were trained with {trained}; with activation="
                      f"{cfg.activation!r} they no longer fit it (fine-tune the model).",
                      UserWarning, stacklevel=3)
    load_head = cfg.include_top and cfg.num_classes == 1000
    if not load_head:
        logger.info("%s: the backbone's weights are loaded; %s", name,
                    "a new classifier is initialised" if cfg.include_top
                    else "the classifier's weights are not used (include_top=False)")
    path = fetch(request, include_top=cfg.include_top)
    layout = request["layout"]
    tensors = (readers.read_safetensors(path) if layout == "timm"
               else readers.read_keras_h5(path))
    bgr = request["spec"]["preprocessing"]["mode"] == "caffe"
    plan = convert.convert(model, model_name=name, family=info["family"], layout=layout,
                           tensors=tensors, path=path, load_head=load_head, bgr=bgr)
    convert.assign(plan)
    return model
