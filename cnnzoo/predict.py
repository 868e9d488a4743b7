"""Classify image files with an exported model (`cnnzoo predict`).

Images are read with `cnnzoo.data.read_image`, converted to the channel
count the model takes (grey or RGB), resized (bilinear) where their size
differs from the model's input, and passed as raw 0-255 pixels: the model
rescales them itself.
"""

import os

import numpy as np

from cnnzoo import _validation as v
from cnnzoo import data


def collect_images(paths):
    """Expands files and folders (recursively, image extensions only) to a sorted file list.

    Raises:
        ValueError: a path does not exist, or a folder holds no images.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)) or not paths or not all(
            isinstance(p, (str, os.PathLike)) and os.fspath(p) for p in paths):
        v.fail("Expected image files and/or folders: a path, or a non-empty list of paths.",
               "images", paths)
    files = []
    for path in paths:
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if os.path.isdir(path):
            found = data.list_images(path, recursive=True)
            if not found:
                v.fail(f"Expected image files ({', '.join(data.IMAGE_EXTENSIONS)}) in the "
                       f"folder {path}; it has none.", "path", path)
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            v.fail(f"The image path does not exist: {path}.", "path", path)
    return files


def load_images(files, input_shape):
    """Reads `files` into a float32 batch matching `input_shape` `(H, W, C)`."""
    height, width, channels = input_shape
    color_mode = {1: "grayscale", 3: "rgb"}.get(channels)
    batch = []
    for file in files:
        pixels = data.read_image(file, image_size=(height, width), color_mode=color_mode)
        if pixels.shape[2] != channels:
            v.fail(f"Expected images with {channels} channels for this model; {file} has "
                   f"{pixels.shape[2]}.", "path", file)
        batch.append(pixels)
    return np.stack(batch)


def predict(export, images, *, top_k=3, batch_size=64):
    """Classifies images with an export.

    Args:
        export: a SavedModel or export folder, or a `.keras` file (see
            `cnnzoo.export.load_export`), or an already loaded
            `cnnzoo.export.LoadedExport`.
        images: image files and/or folders.
        top_k: how many classes to report per image. Defaults to 3.
        batch_size: images per model call.

    Returns:
        A JSON-ready dict: `export`, `format`, `class_names` and
        `predictions`, one per image: `{"image", "label", "top": [{"class",
        "index", "probability"}, ...]}`, best first.
    """
    from cnnzoo import export as export_module

    top_k = v.check_int("top_k", top_k, low=1)
    batch_size = v.check_int("batch_size", batch_size, low=1)
    files = collect_images(images)  # before loading: bad paths fail fast
    loaded = export if isinstance(export, export_module.LoadedExport) \
        else export_module.load_export(export)
    x = load_images(files, loaded.input_shape)
    probabilities = np.concatenate([loaded.predict(x[i:i + batch_size])
                                    for i in range(0, len(x), batch_size)])
    k = min(top_k, probabilities.shape[1])
    predictions = []
    for file, probs in zip(files, probabilities):
        # Stable sort: ties keep the lower class index first, as argmax does.
        order = np.argsort(-probs, kind="stable")[:k]
        top = [{"class": loaded.class_names[i], "index": int(i), "probability": float(probs[i])}
               for i in order]
        predictions.append({"image": file, "label": top[0]["class"], "top": top})
    return {"export": loaded.path, "format": loaded.format,
            "class_names": list(loaded.class_names), "predictions": predictions}


def format_results(results):
    """One line per image: `path  class (probability), ...`."""
    width = max(len(p["image"]) for p in results["predictions"])
    lines = []
    for p in results["predictions"]:
        top = ", ".join(f"{t['class']} ({t['probability']:.3f})" for t in p["top"])
        lines.append(f"{p['image'].ljust(width)}  {top}")
    return "\n".join(lines)
