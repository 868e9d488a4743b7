"""Readers of the publishers' file layouts, into `{layer: {parameter: array}}`.

Both layouts become the same nested dict, so that a converter names a
source layer and a parameter whatever the publisher:

- keras.applications' legacy `.h5`: the file's `layer_names` attribute, each
  layer's group with its `weight_names` (`"conv1_conv/kernel:0"` gives layer
  `conv1_conv`, parameter `kernel`). A whole model saved as `.h5` (its
  `model_weights` group) reads the same.
- timm/torchvision `.safetensors` (read with the `safetensors` NumPy API, no
  PyTorch): `"layer1.0.conv1.weight"` gives layer `layer1.0.conv1`,
  parameter `weight`. PyTorch's `num_batches_tracked` counters are dropped.
"""

import os

import numpy as np

from cnnzoo import _validation as v


def detect_layout(path):
    """`"timm"`, `"keras_applications"` or `"cnnzoo"` (Keras 3's `.weights.h5`) for a local file."""
    name = os.path.basename(path)
    if name.endswith(".safetensors"):
        return "timm"
    if name.endswith(".weights.h5"):
        return "cnnzoo"
    if name.endswith(".h5"):
        return "keras_applications"
    v.fail("Expected a weights file ending in .h5 (keras.applications' layout), .safetensors "
           "(torchvision/timm's) or .weights.h5 (cnnzoo's own, from model.save_weights).",
           "weights", path)


def read_keras_h5(path):
    """keras.applications' `.h5` layout as `{layer: {parameter: array}}`, in the file's order."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError:
        v.fail("Expected an HDF5 file in keras.applications' layout.", "weights", path)
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            v.fail("Expected keras.applications' .h5 layout (a `layer_names` attribute); "
                   "a Keras 3 `.weights.h5` file must be named so.", "weights", path)
        out = {}
        for layer in group.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else str(layer)
            g = group[layer]
            params = {}
            for full in g.attrs.get("weight_names", []):
                full = full.decode() if isinstance(full, bytes) else str(full)
                param = full.rsplit("/", 1)[-1].split(":")[0]
                params[param] = np.asarray(g[full])
            if params:
                out[layer] = params
    return out


def read_safetensors(path):
    """A torchvision/timm `.safetensors` file as `{layer: {parameter: array}}`."""
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except Exception:  # noqa: BLE001  (safetensors' own error types)
        v.fail("Expected a .safetensors file.", "weights", path)
    out = {}
    for key, array in tensors.items():
        layer, _, param = key.rpartition(".")
        if param == "num_batches_tracked":
            continue
        out.setdefault(layer, {})[param] = array
    return out
