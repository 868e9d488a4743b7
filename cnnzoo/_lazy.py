"""A lazily imported `keras`, so that importing a model file costs nothing.

Model files register themselves at import (timm's pattern), and `cnnzoo list`
and `cnnzoo info` read that registry; importing Keras would import TensorFlow
(seconds). Model files therefore use `from cnnzoo._lazy import keras`, which
imports the real module on first attribute access.
"""

import importlib


class _LazyModule:
    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attr):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


keras = _LazyModule("keras")
