"""Every Keras internal cnnzoo relies on, behind one door.

Keras has no public way to do two things
cnnzoo needs:

- read and restore `keras.callbacks.EarlyStopping`'s counters (`wait`,
  `best`, `best_epoch`, `stopped_epoch`: attributes it sets in
  `on_train_begin`, not documented), which a resumed run must carry over;
- pass a seed already drawn from a `keras.random.SeedGenerator` to
  `keras.random` (which takes an int or a generator, not a seed tensor), as
  `VariableDropout` must inside `keras.ops.cond` branches, where the
  generator's state may not be updated: a subclass of `SeedGenerator`
  that holds no variable.

It also says which `Model.export` formats the installed Keras writes
(`export_format_missing`): releases before a format was added ignore
`format` and write a SavedModel.

Each internal is reached here and nowhere else, and each has a contract
(`CONTRACTS`, checked by `tests/test_compat.py`): when a Keras release
changes one, the contract fails with a message naming the internal and the
installed Keras version.
"""

import keras

from cnnzoo._compat import changed

# `EarlyStopping`'s counters, as `on_train_begin` sets them.
EARLY_STOPPING_COUNTERS = ("wait", "best", "best_epoch", "stopped_epoch")


# The first Keras release whose `Model.export` takes each format; earlier
# releases ignore `format` and write a SavedModel under the name given.
EXPORT_FORMAT_SINCE = {"onnx": (3, 8), "litert": (3, 13)}


def keras_version():
    """The installed Keras's (major, minor, patch), as ints."""
    parts = []
    for part in keras.__version__.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) or "0"  # "0rc1", "dev..."
        parts.append(int(digits))
    return tuple(parts + [0] * (3 - len(parts)))


def export_format_missing(format):
    """`None` if the installed Keras's `Model.export` writes `format`, else the release it needs.

    Args:
        format: a `Model.export` format (`"onnx"`, `"litert"`; others always `None`).

    Returns:
        `None`, or the release as a string (`"3.13"`).
    """
    since = EXPORT_FORMAT_SINCE.get(format)
    if since is None or keras_version()[:2] >= since:
        return None
    return ".".join(map(str, since))


def _changed(what):
    return changed("Keras", "keras", what, "3.15.1", "cnnzoo/_compat_keras.py")


def early_stopping_state(callback):
    """An `EarlyStopping`'s counters, JSON-ready."""
    try:
        best = callback.best
        return {"wait": int(callback.wait), "best": None if best is None else float(best),
                "best_epoch": int(callback.best_epoch),
                "stopped_epoch": int(callback.stopped_epoch)}
    except AttributeError:
        raise _changed("EarlyStopping's counters (wait, best, best_epoch, "
                       "stopped_epoch)") from None


def restore_early_stopping(callback, state):
    """Sets an `EarlyStopping`'s counters (after its `on_train_begin`) from `state`."""
    for name in EARLY_STOPPING_COUNTERS:
        if not hasattr(callback, name):
            raise _changed(f"EarlyStopping.{name}")
        setattr(callback, name, state[name])


class DrawnSeed(keras.random.SeedGenerator):
    """A seed already drawn from a `SeedGenerator`, passed on as one.

    Stands for the seed tensor `SeedGenerator.next()` returned, so that
    random ops inside `keras.ops.cond` branches draw from it without
    updating any state. It holds no variable: the base constructor is not
    called.
    """

    def __init__(self, value):
        self._value = value

    def next(self, ordered=True):
        return self._value


def _early_stopping_contract():
    callback = keras.callbacks.EarlyStopping(monitor="loss", patience=5)
    callback.set_model(keras.Sequential())
    callback.on_train_begin()
    for epoch, loss in enumerate((1.0, 2.0)):
        callback.on_epoch_end(epoch, {"loss": loss})
    if early_stopping_state(callback) != {"wait": 1, "best": 1.0, "best_epoch": 0,
                                          "stopped_epoch": 0}:
        raise _changed("EarlyStopping's counters (wait, best, best_epoch, stopped_epoch) "
                       "as on_epoch_end updates them")
    restore_early_stopping(callback, {"wait": 4, "best": 0.5, "best_epoch": 3,
                                      "stopped_epoch": 0})
    callback.on_epoch_end(5, {"loss": 0.7})  # the fifth epoch without a lower loss
    if not callback.model.stop_training:
        raise _changed("EarlyStopping's `wait`, which restored must count towards patience")


def _drawn_seed_contract():
    seed = keras.ops.convert_to_tensor([5, 0], dtype="uint32")  # what seed=5 draws
    drawn = keras.ops.convert_to_numpy(keras.random.uniform((8,), seed=DrawnSeed(seed)))
    expected = keras.ops.convert_to_numpy(keras.random.uniform((8,), seed=5))
    if not (drawn == expected).all():
        raise _changed("keras.random's use of a SeedGenerator (its `next()` as the seed)")


# Internal -> a check that raises `KerasChangedError` when it is not as expected.
CONTRACTS = {
    "early_stopping": _early_stopping_contract,
    "drawn_seed": _drawn_seed_contract,
}
