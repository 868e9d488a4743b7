"""Dropout-rate search with Keras Tuner: the hypermodel, the tuners and the driver.

`ZooHyperModel` (`tuning.hypermodel`) can be handed to any Keras Tuner tuner
directly; `search(...)` (`tuning.driver`, and `cnnzoo tune`) runs the whole
job: a resumable search whose state survives kills, progress, a ranked
report, plots and the export of the best model. `tuning.tuners` builds the
tuners (`tuning.reuse` trains trials on one kept compiled model),
`tuning.state` keeps Keras Tuner's files safe, `tuning.report` reads the
results from the oracle, `tuning.distributed` runs the chief, and
`tuning._compat_keras_tuner` holds every private Keras Tuner API used.
Submodules load on first access, so `import tuning` is instant.
"""

import importlib

_LAZY = {
    "ZooHyperModel": "tuning.hypermodel",
    "search": "tuning.driver",
    "run": "tuning.driver",
    "SearchConfig": "tuning.config",
    "SearchResult": "tuning.driver",
    "make_tuner": "tuning.tuners",
    "TUNERS": "tuning.tuners",
    "SearchFailedError": "tuning.tuners",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuning' has no attribute {name!r}")
