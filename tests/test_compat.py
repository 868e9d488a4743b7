"""The Keras and TensorFlow internals cnnzoo relies on are what its compat modules expect.

(Keras Tuner's: `tests/test_compat_keras_tuner.py`.)
"""

import keras
import pytest

from cnnzoo import _compat, _compat_keras, _compat_tensorflow

CONTRACTS = {f"keras/{name}": check for name, check in _compat_keras.CONTRACTS.items()}
if keras.backend.backend() == "tensorflow":
    CONTRACTS.update({f"tensorflow/{name}": check
                      for name, check in _compat_tensorflow.CONTRACTS.items()})


@pytest.mark.multibackend
@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_the_installed_libraries_keep_each_contract(name):
    CONTRACTS[name]()


def test_a_changed_internal_fails_naming_it_and_the_version(monkeypatch):
    callback = keras.callbacks.EarlyStopping()  # before on_train_begin: no counters yet
    with pytest.raises(_compat.LibraryChangedError,
                       match=rf"EarlyStopping's counters.*keras {_compat.version('keras')}"):
        _compat_keras.early_stopping_state(callback)
    import tensorflow.python.framework.ops as tf_ops

    monkeypatch.delattr(tf_ops, "_gradient_registry")
    assert _compat_tensorflow.gradient_registry() is None  # the search does without
    with pytest.raises(_compat.LibraryChangedError,
                       match=rf"_gradient_registry.*tensorflow {_compat.version('tensorflow')}"):
        CONTRACTS["tensorflow/gradient_registry"]()


def test_a_changed_behaviour_breaks_its_contract(monkeypatch):
    # A Keras whose EarlyStopping kept its patience count elsewhere would
    # resume runs with a fresh count silently: the contract tells.
    def on_epoch_end(self, epoch, logs=None):
        pass

    monkeypatch.setattr(keras.callbacks.EarlyStopping, "on_epoch_end", on_epoch_end)
    with pytest.raises(_compat.LibraryChangedError, match="as on_epoch_end updates them"):
        CONTRACTS["keras/early_stopping"]()
