"""The frozen backbone's features, computed once per search and kept under its folder.

A search from pretrained weights trains only the head while the backbone is
frozen: in inference mode, with no dropout in it (and no augmentation in
front of it), the backbone is a fixed function of each image. Its outputs
for the training and validation images are computed once, batched, in the
search's precision (`cnnzoo.transfer.feature_extractor`), and every trial
trains its head on them (`ZooHyperModel(features=True)`): the same training
as the whole model with a frozen backbone, without the backbone's cost in
every step of every trial (`tests/test_tuning_features.py` compares the two).
Trials that also fine-tune the top stages train on the output of the stages
that no trial unfreezes (`cnnzoo.transfer.frozen_end`), which stay frozen in
both phases.

They are written to `<out>/features/<key>.npz` (atomically), so that a
resumed search and every worker sharing the folder read them instead of
computing them again. The key covers everything the features depend on:
the model, the weights (a file by path, size and modification time), the
size the model sees, the precision, the backend, the layer they are the
output of (where it is not the backbone's end), and the images themselves.
"""

import hashlib
import io
import json
import os
import time

import numpy as np

from cnnzoo import _atomic

FOLDER = "features"


def cache_key(model_name, weights, input_size, precision, arrays, end=None):
    """A hex digest of what the features depend on (`end`: the layer they are the output of)."""
    import keras

    digest = hashlib.sha256()
    weights_id = str(weights)
    if weights is not None and os.path.isfile(os.fspath(weights)):
        stat = os.stat(weights)
        weights_id = f"{os.path.abspath(weights)}:{stat.st_size}:{stat.st_mtime_ns}"
    # `end` only where given: the backbone's features keep their key.
    digest.update(json.dumps([model_name, weights_id, input_size, str(precision),
                              keras.backend.backend()] + ([end] if end else []),
                             default=str).encode())
    from cnnzoo.data import content_hash

    return content_hash(arrays, digest)


def features_for(out, hypermodel, x_train, x_val, *, precision, batch_size=64):
    """`(train_features, val_features, path, how)`: read from `out`, or computed and written there.

    `how` is `"read"` or `"computed in N s"`, for the progress output.
    """
    import keras_tuner as kt

    from cnnzoo import transfer

    def whole_model():  # the pretrained weights loaded
        return hypermodel.build_model(**hypermodel.declare(kt.HyperParameters()), head=False)

    start = time.perf_counter()
    # Where fine-tuning trials unfreeze the top stages, the output of the others.
    model = whole_model() if hypermodel.fine_tune_epochs else None
    end = hypermodel.feature_end(model) if model is not None else None
    key = cache_key(hypermodel.model_name, hypermodel.weights, hypermodel.input_size,
                    precision, (x_train, x_val), end)
    path = os.path.join(out, FOLDER, f"{key}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                train, val = stored["train"], stored["val"]
            if len(train) == len(x_train) and len(val) == len(x_val):
                return train, val, path, "read"
        except (OSError, ValueError, KeyError, EOFError):
            pass  # damaged from outside: computed again
    extractor = transfer.feature_extractor(model or whole_model(), end=end)
    batch = max(int(batch_size), 64)
    train = np.asarray(extractor.predict(x_train, batch_size=batch, verbose=0), "float32")
    val = np.asarray(extractor.predict(x_val, batch_size=batch, verbose=0), "float32")
    buffer = io.BytesIO()
    np.savez(buffer, train=train, val=val)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _atomic.write_bytes(path, buffer.getvalue())
    return train, val, path, f"computed in {time.perf_counter() - start:.1f} s"
