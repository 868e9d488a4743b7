"""The command line's start without TensorFlow's start-up notices.

TensorFlow 2.21 writes its notices from C++, straight to file descriptor 2,
whatever `TF_CPP_MIN_LOG_LEVEL` says: on a CPU-only machine `cnnzoo tune`
opened with seven lines (twice "oneDNN custom operations are on" and "Could
not find cuda drivers", then "failed call to cuInit"), none of which is
news to a user the first line of the run tells which devices it uses.

`start_backend()` imports Keras and lists the accelerators (where those
lines are written) with file descriptor 2 sent to a temporary file, then
writes back every line that is not one of the known notices (`NOTICES`):
warnings and errors still reach the terminal, in order, just after.
"""

import contextlib
import os
import sys
import tempfile

# Parts of TensorFlow's start-up notices: information, not problems.
NOTICES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "TF-TRT Warning: Could not find TensorRT",
)


@contextlib.contextmanager
def without_notices(notices=NOTICES):
    """Drops the lines containing one of `notices` that the block writes to fd 2.

    Everything else written to file descriptor 2 (by C++ or by Python's
    `sys.stderr`) is written back when the block ends, also when it raises.
    Where fd 2 cannot be redirected, the block runs as it is.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True)
                    if not any(n.encode() in line for n in notices)]
            if kept:
                os.write(2, b"".join(kept))


def quiet_start():
    """`start_backend()`, once, for the Python API: unless Keras is imported already.

    `create_model` and the first access to a submodule that needs Keras
    call it, so that `import cnnzoo` and building a model print nothing on
    a machine without a GPU. A caller that imported Keras first has had
    TensorFlow's notices already, from its own import. On another backend
    TensorFlow is not imported here: a JAX user's `seed_trial` or model
    never needs it.
    """
    if "keras" not in sys.modules:
        start_backend(tensorflow=False)


def start_backend(tensorflow=True):
    """Imports Keras and lists the accelerators, without the start-up notices.

    On another backend TensorFlow, where installed, is imported here too
    (`tensorflow=True`): Keras imports it later anyway where it is
    installed (`keras.utils.set_random_seed` seeds it, and TensorBoard and
    SavedModels need it), and its notices would come then.
    """
    with without_notices():
        import keras

        from cnnzoo import _validation as v
        from cnnzoo import runtime

        if tensorflow and keras.backend.backend() != "tensorflow" \
                and v.module_installed("tensorflow"):
            import tensorflow

            tensorflow.config.list_physical_devices("GPU")  # where cuInit says its piece
        runtime.accelerators()
