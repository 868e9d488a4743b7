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
    "MaxPoolPadding2D": "cnnzoo.layers.padding",
    "Preprocessing": "cnnzoo.weights.preprocessing",
}

__all__ = sorted(_LAZY) + ["custom_objects", "factory"]


def custom_objects():
    """cnnzoo's serializable layers (and losses, schedules), by registered name (`"cnnzoo>ReLU"`).

    Importing a layer's module registers it with Keras, and a `.keras` file
    holding cnnzoo layers loads only once they are registered. The layers
    load lazily, so a fresh process that has not built a model has not
    registered them: pass this to Keras (it imports them all),

        keras.saving.load_model(path, custom_objects=cnnzoo.layers.custom_objects())

    cnnzoo's own loaders (`cnnzoo export`, `load_export`, resuming a run) do.
    """
    classes = {getattr(importlib.import_module(module), name)
               for name, module in _LAZY.items()}
    # A trained model's augmentation and compile configuration (schedule, loss).
    from cnnzoo.recipe import augment, optim

    classes |= {augment.Augmentation, optim.Warmup, optim.LabelSmoothingCrossentropy}
    return {f"cnnzoo>{cls.__name__}": cls for cls in classes}


def __getattr__(name):
    if name in _LAZY:
        from cnnzoo import _native_log

        _native_log.quiet_start()
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "factory":
        return importlib.import_module("cnnzoo.layers.factory")
    raise AttributeError(f"module 'cnnzoo.layers' has no attribute {name!r}")
