"""cnnzoo: a Keras 3 model zoo whose ReLU and Dropout you can see, swap, check and tune.

The public surface. Submodules that need Keras (`layers`, `data`, `train`,
`export`, `verify`) load on first access, so `import cnnzoo` is instant.
"""

import importlib

from cnnzoo.models._registry import create_model, list_models, model_info

__version__ = "0.1.0"

_SUBMODULES = ("layers", "blocks", "models", "data", "train", "export", "verify",
               "experiments", "runtime", "predict")

__all__ = ["create_model", "list_models", "model_info", "__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        from cnnzoo import _native_log

        _native_log.quiet_start()
        return importlib.import_module(f"cnnzoo.{name}")
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")
