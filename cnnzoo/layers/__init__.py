"""cnnzoo layers: ReLU and Dropout rebuilt from `keras.ops` primitives.

The layer classes are imported on first access so that `import cnnzoo`
stays light.
"""

import importlib

_LAZY = {
    "ReLU": "cnnzoo.layers.relu",
    "Dropout": "cnnzoo.layers.dropout",
    "SpatialDropout2D": "cnnzoo.layers.dropout",
    "DropPath": "cnnzoo.layers.drop_path",
    "VariableDropout": "cnnzoo.layers.variable_dropout",
}

__all__ = sorted(_LAZY) + ["factory"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "factory":
        return importlib.import_module("cnnzoo.layers.factory")
    raise AttributeError(f"module 'cnnzoo.layers' has no attribute {name!r}")
