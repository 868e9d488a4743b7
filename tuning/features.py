"""The frozen backbone's features, computed once per search and kept under its folder.

A search from pretrained weights trains only the head while the backbone is
frozen: in inference mode, with no dropout in it (and no augmentation in
front of it), the backbone is a fixed function of each image. Its outputs
for the training and validation images are computed once, batched, in the
search's precision (`cnnzoo.transfer.feature_extractor`), and every trial
trains its head on them (`ZooHyperModel(features=True)`): the same training
as the whole model with a frozen backbone, without the backbone's cost in
every step of every trial (`tests/test_tuning_features.py` compares the two).

They are written to `<out>/features/<key>.npz` (atomically), so that a
resumed search and every worker sharing the folder read them instead of
computing them again. The key covers everything the features depend on:
the model, the weights (a file by path, size and modification time), the
size the model sees, the precision, the backend, and the images themselves.
"""

import hashlib
import io
import json
import os
import time

import numpy as np

from cnnzoo import _atomic

FOLDER = "features"


def cache_key(model_name, weights, input_size, precision, arrays):
    """A hex digest of what the features depend on."""
    import keras

    digest = hashlib.sha256()
    weights_id = str(weights)
    if weights is not None and os.path.isfile(os.fspath(weights)):
        stat = os.stat(weights)
        weights_id = f"{os.path.abspath(weights)}:{stat.st_size}:{stat.st_mtime_ns}"
    digest.update(json.dumps([model_name, weights_id, input_size, str(precision),
                              keras.backend.backend()], default=str).encode())
    from cnnzoo.data import content_hash

    return content_hash(arrays, digest)


def features_for(out, hypermodel, x_train, x_val, *, precision, batch_size=64):
    """`(train_features, val_features, path, how)`: read from `out`, or computed and written there.

    `how` is `"read"` or `"computed in N s"`, for the progress output.
    """
    key = cache_key(hypermodel.model_name, hypermodel.weights, hypermodel.input_size,
                    precision, (x_train, x_val))
    path = os.path.join(out, FOLDER, f"{key}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                train, val = stored["train"], stored["val"]
            if len(train) == len(x_train) and len(val) == len(x_val):
                return train, val, path, "read"
        except (OSError, ValueError, KeyError, EOFError):
            pass  # damaged from outside: computed again
    start = time.perf_counter()
    import keras_tuner as kt

    from cnnzoo import transfer

    values = hypermodel.declare(kt.HyperParameters())
    model = hypermodel.build_model(**values, head=False)  # the pretrained weights loaded
    extractor = transfer.feature_extractor(model)
    batch = max(int(batch_size), 64)
    train = np.asarray(extractor.predict(x_train, batch_size=batch, verbose=0), "float32")
    val = np.asarray(extractor.predict(x_val, batch_size=batch, verbose=0), "float32")
    buffer = io.BytesIO()
    np.savez(buffer, train=train, val=val)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _atomic.write_bytes(path, buffer.getvalue())
    return train, val, path, f"computed in {time.perf_counter() - start:.1f} s"
