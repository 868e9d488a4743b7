"""Exports that serving stacks load, that reload to the same numbers, and that a crash never leaves half-written.

`export_saved_model(model, path)` writes a TensorFlow SavedModel whose
`serving_default` signature takes `images` (raw pixels, float32, NHWC,
0-255) and returns `probabilities`. `export_model(..., format=...)` also
writes `.keras`, TFLite and ONNX. Every export is a folder:

    saved_model   PATH/saved_model.pb, variables/, ... and model_card.json
                  (with serving_version=N: PATH/N/..., TensorFlow Serving's layout)
    keras         PATH/model.keras and model_card.json
    tflite        PATH/model.tflite and model_card.json
    onnx          PATH/model.onnx and model_card.json

Each export is written into a temporary sibling folder, reloaded from there,
compared with the Keras model's outputs on a batch, given its
`model_card.json`, and only then renamed into place. An existing target is
replaced only with `overwrite=True`; a failure or a kill leaves the previous
export (or nothing) at `PATH`, never a partial folder.

TFLite and ONNX graphs are made from a float32 copy of the model (mixed
precision layers would need TensorFlow "select" ops that standard runtimes
lack); the card records the copy's difference from the trained model.
"""

import datetime
import json
import os
import platform
import re

import numpy as np

from cnnzoo import _atomic
from cnnzoo import _validation as v

FORMATS = ("saved_model", "keras", "tflite", "onnx")
CARD_FILE = "model_card.json"
ARTIFACTS = {"keras": "model.keras", "tflite": "model.tflite", "onnx": "model.onnx"}
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
SIGNATURE = "serving_default"
# Largest |reloaded - keras| accepted: float32 round-off for float32 graphs;
# bfloat16 / float16 compute keeps about 3 significant digits.
FLOAT32_TOLERANCE = 1e-5
MIXED_TOLERANCE = 2e-2
VERIFY_BATCH = 8
# Formats this package writes through TensorFlow only.
TENSORFLOW_ONLY = ("tflite", "onnx")
# The `Model.export` format each of ours is written with.
KERAS_EXPORT_FORMAT = {"tflite": "litert", "onnx": "onnx"}
EXTRAS = {
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
}


class ExportVerificationError(RuntimeError):
    """The reloaded export disagrees with the Keras model beyond tolerance."""


def export_saved_model(model, path, *, overwrite=False, class_names=None, model_card=None,
                       serving_version=None, verify_batch=None, tolerance=None, verbose=True):
    """Exports a TensorFlow SavedModel with a `serving_default` signature, atomically.

    The signature takes `images` (float32 raw pixels, `(batch, H, W, C)`, 0-255)
    and returns `probabilities`. The export loads with `tf.saved_model.load`,
    with `keras.layers.TFSMLayer(path, call_endpoint="serving_default")`,
    and with TensorFlow Serving (`serving_version=N` writes `path/N/`).

    Args:
        model: a `keras.Model` with one image input, e.g. from
            `cnnzoo.pipeline.build_classifier` or a finished `cnnzoo train` run.
        path: the export folder (the model base folder with `serving_version`).
        overwrite: replace an existing export at the target. Defaults to False:
            an existing target is an error. Only an earlier export (a folder
            with a `model_card.json`) or an empty folder is replaced: any
            other folder, a file, and the current folder (or one above it)
            are refused.
        class_names: one name per output class, stored in the model card.
        model_card: a dict of extra card fields (the training config, data,
            metrics, tuning results, ...), merged into the card; a nested dict
            updates the card's dict of the same key.
        serving_version: a positive int: write TensorFlow Serving's numbered
            version folder `path/<serving_version>/`.
        verify_batch: images `(N, H, W, C)` to compare the reload on.
            Defaults to 8 seeded random images in [0, 255].
        tolerance: the largest accepted absolute difference in
            probabilities. Defaults to 1e-5 (2e-2 for mixed-precision models).
        verbose: print where the export went and the verification result.

    Returns:
        The model card (a dict), with `"path"` set to the export folder.

    Raises:
        ValueError: bad arguments, an existing target without `overwrite`,
            or a location that cannot be written.
        ExportVerificationError: the reload disagrees beyond `tolerance`;
            nothing is left at the target.
    """
    return export_model(model, path, format="saved_model", overwrite=overwrite,
                        class_names=class_names, model_card=model_card,
                        serving_version=serving_version, verify_batch=verify_batch,
                        tolerance=tolerance, verbose=verbose)


def export_model(model, path, *, format="saved_model", overwrite=False, class_names=None,
                 model_card=None, serving_version=None, verify_batch=None, tolerance=None,
                 verbose=True):
    """Exports `model` in one of `FORMATS` into the folder `path`, atomically and verified.

    Args:
        format: `"saved_model"` (default; needs only the core install),
            `"keras"`, `"tflite"` or `"onnx"` (needs `pip install 'cnnzoo[onnx]'`).
        Other arguments: as `export_saved_model`. `serving_version` applies
            to `"saved_model"` only.

    Returns:
        The model card (a dict), with `"path"` set to the export folder.
    """
    import keras

    v.check_choice("format", format, FORMATS)
    v.check_bool("overwrite", overwrite)
    v.check_bool("verbose", verbose)
    if not isinstance(model, keras.Model):
        v.fail("Expected `model` to be a keras.Model.", "model", type(model).__name__)
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None  # a model that was never built or called
    if not inputs or not outputs:
        v.fail("Expected a built model (give it an Input, or call it on data first).",
               "model", model.name)
    if len(inputs) != 1 or len(outputs) != 1:
        v.fail("Expected a model with one image input and one output.", "model", model.name)
    raw_shape = tuple(model.inputs[0].shape[1:])
    if len(raw_shape) != 3 or any(d is None for d in raw_shape):
        v.fail("Expected the model input to be fixed-size images (H, W, C).", "input_shape",
               model.inputs[0].shape)
    num_classes = model.outputs[0].shape[-1]
    if class_names is not None:
        if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__iter__"):
            v.fail("Expected `class_names` as a list of names, one per class.", "class_names",
                   class_names)
        class_names = [str(c) for c in class_names]
        if len(class_names) != num_classes:
            v.fail(f"Expected {num_classes} class names, one per model output.",
                   "class_names", class_names)
    if model_card is not None and not isinstance(model_card, dict):
        v.fail("Expected `model_card` to be a dict of extra card fields.", "model_card",
               model_card)
    if serving_version is not None:
        if format != "saved_model":
            v.fail("Expected `serving_version` only with format='saved_model' (TensorFlow "
                   "Serving's layout).", "serving_version", serving_version)
        serving_version = v.check_int("serving_version", serving_version, low=1)
    if tolerance is not None:
        tolerance = v.check_number("tolerance", tolerance, low=0.0)
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        v.fail("Expected `path` to be a folder path.", "path", path)
    base = os.path.abspath(os.path.expanduser(path))
    target = os.path.join(base, str(serving_version)) if serving_version else base
    if format in TENSORFLOW_ONLY and keras.backend.backend() != "tensorflow":
        # Keras converts to LiteRT from TensorFlow (or PyTorch), and to ONNX
        # on JAX only with jax2onnx, which this package does not install.
        v.fail(f"Expected the TensorFlow backend for format='{format}': run with "
               f"KERAS_BACKEND=tensorflow (the export reads a .keras file or a run folder "
               f"from any backend).", "format", format)
    if format in EXTRAS:
        _require(format)
    _require_keras(format)
    batch = _verify_batch(verify_batch, raw_shape)

    _remove_stale_temporaries(target)
    _check_target(target, path, overwrite)
    from cnnzoo.recipe import augment

    # Training's augmentation changes nothing at inference: the export leaves it out.
    model = augment.strip(model)
    exported = _float32_copy(model) if format in ("tflite", "onnx") else model
    reference = np.asarray(exported.predict(batch, verbose=0), np.float64)
    mixed = _is_mixed(exported)
    if tolerance is None:
        tolerance = MIXED_TOLERANCE if mixed else FLOAT32_TOLERANCE

    try:
        with _atomic.atomic_dir(target, overwrite=overwrite) as tmp:
            artifact = _WRITERS[format](exported, tmp, raw_shape)
            reloaded, how = _RELOADERS[format](tmp, batch)
            diff = float(np.max(np.abs(np.asarray(reloaded, np.float64) - reference)))
            if not np.isfinite(diff) or diff > tolerance:
                raise ExportVerificationError(
                    f"The {format} export reloaded from {target} disagrees with the Keras "
                    f"model: max |difference| {diff:.3g} > tolerance {tolerance:g}; nothing "
                    f"was written.")
            verification = {
                "reloaded_with": how,
                "batch_size": int(len(batch)),
                "max_abs_diff": diff,
                "tolerance": tolerance,
                "passed": True,
                "compute_dtype": _compute_dtype(exported),
            }
            if exported is not model:
                original = np.asarray(model.predict(batch, verbose=0), np.float64)
                verification["float32_copy_max_abs_diff_vs_trained"] = float(
                    np.max(np.abs(reference - original)))
            # The card describes what was written: the float32 copy for
            # TFLite and ONNX.
            card = build_card(exported, format=format, artifact=artifact,
                              class_names=class_names, verification=verification,
                              serving_version=serving_version, extra=model_card)
            _atomic.write_json(os.path.join(tmp, CARD_FILE), card)
    except OSError as error:
        reason = error.strerror or str(error)
        v.fail(f"Could not write the export to {target}: {reason}.", "path", path)
    card["path"] = target
    if verbose:
        print(f"Exported {format} to {target} "
              f"(reload max |difference| {diff:.3g}, tolerance {tolerance:g}); "
              f"card: {os.path.join(target, CARD_FILE)}")
    return card


def _check_target(target, path, overwrite):
    """Refuses a target that is not a folder, or that `overwrite` must not replace."""
    if not os.path.lexists(target):
        return
    if not os.path.isdir(target) or os.path.islink(target):
        kind = "a link" if os.path.islink(target) else "a file"
        v.fail(f"Expected `path` to be a folder for the export; {target} is {kind}.",
               "path", path)
    if not overwrite:
        return  # `atomic_dir` says that it exists
    cwd = os.path.realpath(os.getcwd())
    real = os.path.realpath(target)
    if cwd == real or cwd.startswith(real + os.sep):
        v.fail(f"The export would replace {target}, which is or holds the current folder. "
               f"Choose another --out.", "path", path)
    if os.listdir(target) and not os.path.isfile(os.path.join(target, CARD_FILE)):
        v.fail(f"The folder {target} holds no cnnzoo export (no {CARD_FILE}); --overwrite "
               f"(overwrite=True) replaces only an earlier export. Choose another --out.",
               "path", path)


def _remove_stale_temporaries(target):
    """Tidies up after an export of `target` that was killed.

    `atomic_dir` writes into `.NAME.*.tmp` folders, never a complete export
    (a complete one is renamed into place): they are removed. A replaced
    export is renamed aside to `.NAME.old-*` just before the new one takes
    its place: without a target, a kill came between the two renames, and
    the old export is put back; with one, the old export is removed. A
    replaced export whose removal was cut short is `.NAME.del-*`, never put
    back: it is removed. Two
    exports to the same target at the same moment are not supported anyway.
    """
    import glob
    import shutil

    def siblings(suffix):
        pattern = os.path.join(glob.escape(os.path.dirname(target)),
                               f".{glob.escape(os.path.basename(target))}.{suffix}")
        return [p for p in glob.glob(pattern) if os.path.isdir(p) and not os.path.islink(p)]

    for stale in siblings("*.tmp") + siblings("del-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for old in sorted(siblings("old-*"), key=os.path.getmtime, reverse=True):
        if not os.path.lexists(target):
            os.replace(old, target)
        else:
            shutil.rmtree(old, ignore_errors=True)


# -- writers and reloaders ------------------------------------------------------


def _write_saved_model(model, folder, raw_shape):
    import keras

    if keras.backend.backend() == "torch":
        return _write_saved_model_with_tensorflow(model, folder)
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        return {OUTPUT_NAME: model(images, training=False)}

    archive.add_endpoint(
        name=SIGNATURE, fn=serve,
        input_signature=[tf.TensorSpec((None,) + raw_shape, tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(folder, verbose=False)
    return "."


# Run with KERAS_BACKEND=tensorflow: argv[1] a .keras file, argv[2] the folder.
_SAVED_MODEL_FROM_KERAS = (
    "import sys\n"
    "from cnnzoo import export\n"
    "model = export.load_keras_model(sys.argv[1])\n"
    "export._write_saved_model(model, sys.argv[2], tuple(model.inputs[0].shape[1:]))\n")


def _write_saved_model_with_tensorflow(model, folder):
    """The SavedModel of a model on the torch backend, written by Keras on TensorFlow.

    Keras's torch `ExportArchive` converts through `torch_xla` (StableHLO),
    which has no release for the PyTorch versions cnnzoo supports; a
    `.keras` file is the same model on every backend. So the model is saved
    as one and a TensorFlow-backend Python process writes the SavedModel
    from it (about as long as a TensorFlow start); the caller reloads and
    verifies it against this model as for any export.

    Raises:
        ImportError: TensorFlow is not installed (a SavedModel needs it).
    """
    import subprocess
    import sys
    import tempfile

    import cnnzoo

    if not v.module_installed("tensorflow"):
        raise ImportError("a SavedModel needs TensorFlow, which is not installed")
    with tempfile.TemporaryDirectory(prefix="cnnzoo-export-") as scratch:
        source = os.path.join(scratch, ARTIFACTS["keras"])
        model.save(source)
        # The cnnzoo that runs here, wherever it was imported from.
        root = os.path.dirname(os.path.dirname(os.path.abspath(cnnzoo.__file__)))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": path,
               "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        proc = subprocess.run([sys.executable, "-c", _SAVED_MODEL_FROM_KERAS, source, folder],
                              env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError("TensorFlow could not write the SavedModel of the torch model: "
                           + (lines[-1] if lines else f"exit code {proc.returncode}"))
    return "."


def _reload_saved_model(folder, batch):
    import tensorflow as tf

    loaded = _load_saved_model(folder)
    out = loaded.signatures[SIGNATURE](**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME]
    return out.numpy(), f"tf.saved_model.load(...).signatures['{SIGNATURE}']"


def _load_saved_model(path):
    """`tf.saved_model.load`, without its warning about gradients.

    An export made on JAX holds functions with custom gradients that a
    SavedModel does not keep; TensorFlow warns of it on every load, though
    serving never asks for a gradient.
    """
    import logging

    import tensorflow as tf

    def unsaved_gradients(record):
        return "with ops with unsaved custom gradients" not in record.getMessage()

    logger = logging.getLogger("absl")
    logger.addFilter(unsaved_gradients)
    try:
        return tf.saved_model.load(path)
    finally:
        logger.removeFilter(unsaved_gradients)


def _write_keras(model, folder, raw_shape):
    model.save(os.path.join(folder, ARTIFACTS["keras"]))
    return ARTIFACTS["keras"]


def _reload_keras(folder, batch):
    loaded = load_keras_model(os.path.join(folder, ARTIFACTS["keras"]))
    return loaded.predict(batch, verbose=0), "keras.saving.load_model(..., safe_mode=True)"


def _write_tflite(model, folder, raw_shape):
    model.export(os.path.join(folder, ARTIFACTS["tflite"]), format=KERAS_EXPORT_FORMAT["tflite"],
                 verbose=False)
    return ARTIFACTS["tflite"]


def tflite_interpreter(path):
    """A LiteRT interpreter (`ai_edge_litert` when installed, else `tf.lite`), allocated.

    Allocating creates LiteRT's CPU delegate, which announces itself on
    file descriptor 2 ("INFO: Created TensorFlow Lite XNNPACK delegate for
    CPU."): that line is dropped, anything else written then is kept.
    """
    from cnnzoo import _native_log

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            interpreter = tf.lite.Interpreter(model_path=path)
    else:
        interpreter = Interpreter(model_path=path)
    with _native_log.without_notices(("Created TensorFlow Lite XNNPACK delegate",)):
        interpreter.allocate_tensors()
    return interpreter


def run_tflite(interpreter, batch):
    """Runs a TFLite interpreter one image at a time; returns probabilities."""
    runner = interpreter.get_signature_runner()
    inputs = interpreter.get_signature_list()[SIGNATURE]["inputs"]
    outs = []
    for image in batch:
        result = runner(**{inputs[0]: image[None].astype(np.float32)})
        outs.append(next(iter(result.values()))[0])
    return np.stack(outs)


def _reload_tflite(folder, batch):
    interpreter = tflite_interpreter(os.path.join(folder, ARTIFACTS["tflite"]))
    return run_tflite(interpreter, batch), "LiteRT Interpreter signature runner"


def _write_onnx(model, folder, raw_shape):
    model.export(os.path.join(folder, ARTIFACTS["onnx"]), format=KERAS_EXPORT_FORMAT["onnx"],
                 verbose=False)
    return ARTIFACTS["onnx"]


def run_onnx(path, batch):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: batch.astype(np.float32)})[0]


def _reload_onnx(folder, batch):
    return run_onnx(os.path.join(folder, ARTIFACTS["onnx"]), batch), "onnxruntime"


_WRITERS = {"saved_model": _write_saved_model, "keras": _write_keras,
            "tflite": _write_tflite, "onnx": _write_onnx}
_RELOADERS = {"saved_model": _reload_saved_model, "keras": _reload_keras,
              "tflite": _reload_tflite, "onnx": _reload_onnx}


def _require_keras(format):
    """Refuses a format the installed Keras cannot export (it would write a SavedModel)."""
    import keras

    from cnnzoo import _compat_keras

    needs = _compat_keras.export_format_missing(KERAS_EXPORT_FORMAT.get(format))
    if needs:
        v.fail(f"Exporting to {format} needs Keras {needs} or newer (Keras "
               f"{keras.__version__} is installed): pip install 'keras>={needs}'.",
               "format", format)


def _require(format):
    missing = [m for m in EXTRAS[format] if not v.module_installed(m)]
    if missing:
        v.fail(f"Exporting to {format} needs {', '.join(EXTRAS[format])}; missing "
               f"{', '.join(missing)}. Install them with: pip install 'cnnzoo[{format}]'.",
               "format", format)


# -- helpers ----------------------------------------------------------------------


def _verify_batch(batch, raw_shape):
    if batch is None:
        rng = np.random.default_rng(0)
        return rng.uniform(0, 255, (VERIFY_BATCH,) + raw_shape).astype(np.float32)
    batch = np.asarray(batch, np.float32)
    if batch.ndim != 4 or tuple(batch.shape[1:]) != raw_shape or len(batch) == 0:
        v.fail(f"Expected `verify_batch` of shape (N, {', '.join(map(str, raw_shape))}).",
               "verify_batch.shape", batch.shape)
    return batch


def walk_layers(model):
    """Every layer of `model`, descending into nested models."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)


def _compute_dtype(model):
    dtypes = sorted({getattr(layer, "compute_dtype", None) or "float32"
                     for layer in walk_layers(model)})
    return dtypes[0] if len(dtypes) == 1 else dtypes


def _is_mixed(model):
    return any(layer.dtype_policy.name.startswith("mixed") for layer in walk_layers(model))


def _float32_copy(model):
    """The same model and weights with every layer in float32 (the model itself if it is)."""
    import keras

    if not _is_mixed(model):
        return model

    def to_float32(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return {**obj, "config": {**obj.get("config", {}), "name": "float32"}}
            return {k: to_float32(val) for k, val in obj.items()}
        if isinstance(obj, list):
            return [to_float32(val) for val in obj]
        return obj

    config = to_float32(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config, safe_mode=True)
    copy.set_weights(model.get_weights())
    return copy


def _zoo_name(model):
    return re.sub(r"_classifier$", "", model.name)


def describe_layers(model):
    """The knobs visible in the graph: hidden activations and every dropout layer."""
    activations = {}
    dropout = []
    for layer in walk_layers(model):
        cls = type(layer).__name__
        if "Dropout" in cls or "DropPath" in cls:
            dropout.append({"name": layer.name, "class": cls,
                            "rate": float(getattr(layer, "rate", 0.0))})
        elif re.search(r"_act\d*$", layer.name) or cls in ("ReLU", "LeakyReLU", "ELU", "PReLU"):
            fn = getattr(layer, "activation", None)
            key = cls if fn is None else f"{cls}({getattr(fn, '__name__', fn)})"
            activations[key] = activations.get(key, 0) + 1
    return {"hidden_activations": activations, "dropout_layers": dropout}


def describe_preprocessing(model):
    steps = []
    for layer in walk_layers(model):
        cls = type(layer).__name__
        if cls == "Resizing":
            steps.append({"layer": layer.name, "op": "resize", "height": layer.height,
                          "width": layer.width, "interpolation": layer.interpolation})
        elif cls == "Rescaling":
            steps.append({"layer": layer.name, "op": "rescale",
                          "scale": float(np.asarray(layer.scale)),
                          "offset": float(np.asarray(layer.offset))})
    return steps


def library_versions():
    import keras

    import cnnzoo

    versions = {"cnnzoo": cnnzoo.__version__, "keras": keras.__version__,
                "keras_backend": keras.backend.backend(), "numpy": np.__version__,
                "python": platform.python_version()}
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    except ImportError:
        pass
    return versions


def build_card(model, *, format, artifact, class_names, verification, serving_version=None,
               extra=None):
    """The `model_card.json` content for an export of `model`."""
    raw_shape = list(model.inputs[0].shape[1:])
    num_classes = int(model.outputs[0].shape[-1])
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    preprocessing = describe_preprocessing(model)
    resize = next((step for step in preprocessing if step["op"] == "resize"), None)
    description = (f"raw pixels (0-255) of {raw_shape[0]}x{raw_shape[1]} images (resize "
                   f"others to that size first)")
    if resize:
        from cnnzoo import pipeline

        why = pipeline.resize_reason(_zoo_name(model), raw_shape,
                                     (resize["height"], resize["width"]))
        description += (f"; the model resizes them to {resize['height']}x{resize['width']} "
                        f"({why}) and rescales them itself")
    elif preprocessing:
        description += "; the model rescales them itself"
    card = {
        "format": format,
        "artifact": artifact,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": _zoo_name(model),
            "keras_name": model.name,
            "parameters": int(model.count_params()),
            "trainable_parameters": trainable,
            "dtype_policy": sorted({layer.dtype_policy.name for layer in walk_layers(model)}),
            "config": None,
            **describe_layers(model),
        },
        "input": {
            "name": INPUT_NAME,
            "shape": [None] + raw_shape,
            "dtype": "float32",
            "layout": "NHWC (batch, height, width, channels)",
            "range": [0, 255],
            "description": description,
        },
        "preprocessing": preprocessing,
        "output": {"name": OUTPUT_NAME, "shape": [None, num_classes], "dtype": "float32",
                   "description": "class probabilities (softmax)"},
        "class_names": class_names if class_names is not None
        else [str(i) for i in range(num_classes)],
        "serving": {"signature": SIGNATURE, "version": serving_version}
        if format == "saved_model" else None,
        "training": None,
        "versions": library_versions(),
        "verification": verification,
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    return json.loads(json.dumps(card, default=_json_default))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return getattr(obj, "__name__", repr(obj))


# -- sources: run folders and .keras files -----------------------------------------


def load_keras_model(path):
    """Loads a `.keras` file with `safe_mode=True`; a clear ValueError when it is not a model.

    cnnzoo's layers are registered first, so a fresh process loads models
    that hold them (`implementation="primitive"`, stochastic depth, ...).
    """
    import keras

    from cnnzoo import layers

    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        v.fail(f"The model file does not exist: {path}.", "path", path)
    if not v.starts_as_zip(path):
        v.fail(f"Could not load {path} as a Keras model: not a .keras model file (a .keras "
               f"file is a zip archive; this file is not one).", "path", path)
    try:
        return keras.saving.load_model(path, custom_objects=layers.custom_objects(),
                                       safe_mode=True)
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds for a bad file
        detail = " ".join(str(error).split())[:300].rstrip(".") or type(error).__name__
        v.fail(f"Could not load {path} as a Keras model (not a .keras model file?): {detail}.",
               "path", path)


def card_from_run(record, run_dir):
    """Model-card fields from the `run.json` of the finished run in `run_dir`."""
    return {
        "model": {"config": record.get("config")},
        "training": {
            "data": record.get("data"),
            "metrics": record.get("metrics"),
            "epochs_run": record.get("epochs_run"),
            "best_epoch": record.get("best_epoch"),
            "stopped_early": record.get("stopped_early"),
            "runtime": record.get("runtime"),
            "run_dir": os.path.abspath(run_dir),  # where it is now, if it was moved
        },
    }


def _existing_path(value, name, expected, noun):
    """`value` as an absolute path that exists; a ValueError naming it otherwise."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        v.fail(f"Expected {expected}.", name, value)
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.exists(path):
        v.fail(f"The {noun} does not exist: {path}.", name, value)
    return path


def load_source(source):
    """Resolves a run folder or a `.keras` file to `(model, class_names, card_fields)`."""
    from cnnzoo import train

    path = _existing_path(source, "source", "a run folder or a .keras file", "path")
    if os.path.isdir(path):
        record, model_path = train.load_run(path)
        return (load_keras_model(model_path), record.get("class_names"),
                card_from_run(record, path))
    if not path.endswith(".keras"):
        v.fail(f"Expected a run folder or a .keras file; {path} is neither.", "source", source)
    model = load_keras_model(path)
    folder = os.path.dirname(path)
    if os.path.basename(path) == train.MODEL_FILE and os.path.isfile(
            os.path.join(folder, train.RUN_FILE)):
        try:
            record, _ = train.load_run(folder)
            return model, record.get("class_names"), card_from_run(record, folder)
        except ValueError:
            pass
    if os.path.basename(path) == ARTIFACTS["keras"] and os.path.isfile(
            os.path.join(folder, CARD_FILE)):
        # A keras-format export: its card carries the names and the history.
        card = _read_card(os.path.join(folder, CARD_FILE), "source", source)
        return model, card.get("class_names"), card_from_card(card)
    return model, None, {}


def card_from_card(card):
    """The fields of an earlier export's card that describe the model, not that export."""
    own = {"format", "artifact", "created", "model", "input", "preprocessing", "output",
           "class_names", "serving", "versions", "verification", "path"}
    fields = {k: val for k, val in card.items() if k not in own}
    config = (card.get("model") or {}).get("config")
    if config is not None:
        fields["model"] = {"config": config}
    return fields


def _read_card(card_path, name, value):
    try:
        with open(card_path) as f:
            card = json.load(f)
    except (OSError, ValueError) as error:
        v.fail(f"Could not read {card_path}: {error}.", name, value)
    if not isinstance(card, dict):
        v.fail(f"Could not read {card_path}: not a model card (a JSON object).", name, value)
    return card


# -- loading exports back ------------------------------------------------------------


class LoadedExport:
    """An export (or a `.keras` file) loaded for prediction.

    Attributes:
        path: what was loaded.
        format: `"saved_model"`, `"keras"` or `"tflite"`.
        class_names: from the model card (or the run), else `"0"`, `"1"`, ...
        input_shape: `(height, width, channels)` of the raw images it takes.
        card: the model card, or None.
    """

    def __init__(self, path, format, predict_fn, input_shape, class_names, card):
        self.path = path
        self.format = format
        self._predict = predict_fn
        self.input_shape = tuple(int(d) for d in input_shape)
        self.class_names = class_names
        self.card = card

    def predict(self, images):
        """Probabilities `(N, num_classes)` for raw images `(N, H, W, C)`."""
        try:
            x = np.asarray(images, np.float32)
        except (TypeError, ValueError):
            v.fail("Expected images as a numeric array (N, H, W, C).", "images",
                   type(images).__name__)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape or not len(x):
            h, w, c = self.input_shape
            v.fail(f"Expected images of shape (N, {h}, {w}, {c}) for this export (N >= 1; "
                   f"resize them first, as `cnnzoo.predict.load_images` does).",
                   "images.shape", tuple(x.shape))
        return np.asarray(self._predict(x), np.float32)


def load_export(path):
    """Loads a SavedModel folder (or a TF Serving base folder), an export folder or a `.keras` file.

    Raises:
        ValueError: the path does not exist or holds no model.
    """
    path = _existing_path(path, "path", "a path to an export", "export")
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "saved_model.pb")):
        versions = [d for d in os.listdir(path)
                    if d.isdigit() and os.path.isdir(os.path.join(path, d))]
        if versions:  # TensorFlow Serving's base folder: the newest version
            path = os.path.join(path, max(versions, key=int))
    card = None
    card_path = os.path.join(path if os.path.isdir(path) else os.path.dirname(path), CARD_FILE)
    if os.path.isfile(card_path):
        card = _read_card(card_path, "path", path)

    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        import tensorflow as tf

        try:
            loaded = _load_saved_model(path)
            signature = loaded.signatures[SIGNATURE]
        except Exception as error:  # noqa: BLE001
            detail = " ".join(str(error).split())[:300]
            v.fail(f"Could not load the SavedModel {path}: {detail}.", "path", path)
        spec = next(iter(signature.structured_input_signature[1].values()))
        input_name = next(iter(signature.structured_input_signature[1]))
        output_name = next(iter(signature.structured_outputs))

        def predict(x):
            return signature(**{input_name: tf.constant(x)})[output_name].numpy()

        fmt, shape = "saved_model", spec.shape[1:]
    elif os.path.isdir(path) and os.path.isfile(os.path.join(path, ARTIFACTS["tflite"])):
        interpreter = tflite_interpreter(os.path.join(path, ARTIFACTS["tflite"]))
        details = interpreter.get_input_details()[0]
        fmt, shape = "tflite", details["shape_signature"][1:]

        def predict(x):
            return run_tflite(interpreter, x)
    elif os.path.isdir(path) and os.path.isfile(os.path.join(path, ARTIFACTS["onnx"])):
        _require("onnx")
        onnx_path = os.path.join(path, ARTIFACTS["onnx"])
        fmt, shape = "onnx", card["input"]["shape"][1:] if card else None
        if shape is None:
            v.fail(f"Expected {CARD_FILE} beside {onnx_path}.", "path", path)

        def predict(x):
            return run_onnx(onnx_path, x)
    else:
        keras_path = os.path.join(path, ARTIFACTS["keras"]) if os.path.isdir(path) else path
        if not os.path.isfile(keras_path):
            v.fail(f"Expected a SavedModel folder, an export folder or a .keras file; {path} "
                   f"holds none.", "path", path)
        model = load_keras_model(keras_path)
        if card is None:
            try:
                _, names, _ = load_source(keras_path)
            except ValueError:
                names = None
            card = {"class_names": names} if names else None
        fmt, shape = "keras", model.inputs[0].shape[1:]

        def predict(x):
            return model.predict(x, verbose=0)

    shape = [None if d is None else int(d) for d in shape]
    if len(shape) != 3 or any(d is None or d < 1 for d in shape):
        v.fail(f"Expected an export that takes fixed-size images (N, H, W, C); {path} takes "
               f"{tuple([None] + shape)}.", "path", path)
    names = (card or {}).get("class_names")
    probe = None
    if names is None:
        probe = predict(np.zeros((1,) + tuple(shape), np.float32))
        names = [str(i) for i in range(probe.shape[-1])]
    return LoadedExport(path, fmt, predict, shape, list(names), card)
