"""Memory that a trial leaves behind, released before the next one.

`keras.backend.clear_session()` and `gc.collect()` (which Keras Tuner runs
before each build) free the models of past trials, but on TensorFlow each
trained model also leaves its whole training graph behind, about 8 MB and
12,000 Python objects for `simple_cnn` on digits: a search of a thousand
trials would grow by gigabytes. The cause: Keras's TensorFlow optimizer sums
gradients over replicas with `ReplicaContext.all_reduce`, which is a
`tf.custom_gradient`; in graph mode each trace registers its gradient
function, a closure over the traced graph, in TensorFlow's global gradient
registry under a fresh `CustomGradient-<n>` name, and nothing removes it.

`TrialMemory` notes the registry's names when a trial starts and, once the
trial's model is gone, removes the names the trial added. Other backends
keep nothing of the kind; there it only clears the session.

Each of those collections walks every object the process tracks, about
460,000 once TensorFlow, Keras and Keras Tuner are imported: a quarter of a
second on these CPUs, paid by Keras's `clear_session`, by Keras Tuner before
each build and by `TrialMemory`. `existing_objects_frozen()` takes what
exists when a search starts (the imported modules, the data) out of those
walks for the search's duration (`gc.freeze`), so a collection only walks
what the search itself made, and a trial's garbage is still freed at once.
"""

import contextlib
import gc

from cnnzoo import _compat_tensorflow, runtime


def custom_gradient_names():
    """The `tf.custom_gradient` functions registered so far (empty off TensorFlow)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return frozenset()
    return _compat_tensorflow.custom_gradient_names()


class TrialMemory:
    """Releases what one trial leaves behind.

    Call `begin()` before the trial builds its model and `end()` after the
    model has been dropped.
    """

    def __init__(self):
        self._before = None

    def begin(self):
        self._before = custom_gradient_names()

    def end(self):
        # Keras's clear_session without its own collection (one follows),
        # keeping the search's precision.
        runtime.clear_session(free_memory=False)
        if self._before is not None:
            # Only this trial's graphs used them, and they are garbage now.
            _compat_tensorflow.forget_gradients(custom_gradient_names() - self._before)
        # One collection frees the models, their graphs and the gradient
        # functions together.
        gc.collect()
        self._before = None


@contextlib.contextmanager
def existing_objects_frozen():
    """Within the block, garbage collections skip the objects that existed before it.

    The objects alive on entry are moved to the collector's permanent
    generation (`gc.freeze`) and back on exit (`gc.unfreeze`), where the
    next collections see them again: anything among them that became
    garbage in between is freed then. A process that froze objects itself
    (`gc.get_freeze_count() > 0`) is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def live_objects():
    """The number of objects the garbage collector tracks, after a collection."""
    gc.collect()
    return len(gc.get_objects())


def rss_mb():
    """This process's resident memory in MiB (Linux; `None` elsewhere)."""
    import os

    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None
