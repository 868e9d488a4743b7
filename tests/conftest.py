import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# TensorFlow started now, with its default threads: a search in this process
# cannot set them (`cnnzoo.runtime.configure`), whichever test runs first.
# The fresh-process choice is tested in subprocesses (tests/test_runtime.py).
keras.ops.convert_to_numpy(keras.ops.zeros(()))


@pytest.fixture(autouse=True)
def _seed_and_policy():
    """Every test starts seeded and in float32, whatever the one before set."""
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
