"""Input pipelines that never starve the model, with a seeded batch order.

`train_data(x, y, batch_size=..., seed=...)` and `eval_data(x, y, ...)`
return keyword arguments for `model.fit` / `model.evaluate`:

    train = input_pipeline.train_data(x_train, y_train, batch_size=64, seed=0)
    val = input_pipeline.eval_data(x_val, y_val, batch_size=256)
    model.fit(**train, validation_data=val["x"], epochs=5)

- TensorFlow: the arrays live once in memory as tensors (the cache); every
  epoch is a stateless shuffle of the indices keyed by `(seed, epoch)`,
  batches are gathered with one op and prefetched while the model trains,
  so the input never waits on Python.
- JAX and PyTorch: a `keras.utils.PyDataset` over the in-memory arrays,
  shuffled per epoch by a numpy permutation keyed by `(seed, epoch)`; Keras
  moves each batch to the device.

The batch order depends on `seed` and the epoch only, never on global
random state: two runs with the same `seed` see the same batches, whatever
else was seeded in between: trials trained on a kept model
(`tuning.reuse`) see exactly the batches they would on a fresh one.
"""

import math

import numpy as np

from cnnzoo import _validation as v


def _check_arrays(x, y):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2 or len(x) == 0:
        v.fail("Expected `x` as a non-empty array of examples.", "x.shape", x.shape)
    if y.shape[:1] != x.shape[:1]:
        v.fail("Expected `x` and `y` with the same number of examples.",
               "(len(x), len(y))", (len(x), len(y)))
    return x, y


def epoch_order(n, seed, epoch):
    """The permutation of `range(n)` for epoch `epoch` (0-based) on JAX and PyTorch.

    (TensorFlow's pipeline shuffles in the graph, keyed by the same
    `(seed, epoch)`, into another permutation.)
    """
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def _sequence_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Seeded shuffled batches of in-memory arrays (JAX / PyTorch backends)."""

        def __init__(self, x, y, batch_size, seed, shuffle, names=None):
            super().__init__()
            self.names = names
            self.x, self.y = x, y
            self.batch_size = batch_size
            self.seed = seed
            self.shuffle = shuffle
            self.epoch = 0
            self._last = None
            self._order = self._make_order()

        def _make_order(self):
            n = len(self.x)
            return epoch_order(n, self.seed, self.epoch) if self.shuffle else np.arange(n)

        def __len__(self):
            return math.ceil(len(self.x) / self.batch_size)

        def __getitem__(self, index):
            # Keras asks for batches 0, 1, ..., len - 1 once per epoch (one
            # worker, in order). A pass that starts again at 0 after reaching
            # the last batch is the next epoch; one that starts again earlier
            # is the same epoch (Keras peeks at batch 0 to build a new model
            # before training: that peek must not move the order on, or a
            # model built earlier would see other batches than a new one).
            # With one batch an epoch and a peek look alike: the order stays
            # epoch 0's (within one batch it decides only which example
            # meets which dropout draw).
            if index == 0 and self._last == len(self) - 1 and len(self) > 1:
                self.epoch += 1
                self._order = self._make_order()
            self._last = index
            idx = self._order[index * self.batch_size:(index + 1) * self.batch_size]
            return self.x[idx], _replicate(self.y[idx], self.names)

    return ArrayBatches


def _labels(outputs):
    """The label structure: `y` itself, or `{name: y}` for several outputs."""
    if outputs is None:
        return None
    if isinstance(outputs, str) or not all(isinstance(o, str) for o in outputs) or not outputs:
        v.fail("Expected `outputs` as a list of output names.", "outputs", outputs)
    return list(outputs)


def train_data(x, y, *, batch_size, seed=0, shuffle=True, outputs=None):
    """Training input for `model.fit(**train_data(...))`.

    Args:
        x: examples, `(N, ...)`.
        y: labels, `(N, ...)`.
        batch_size: examples per step.
        seed: keys the per-epoch shuffle (and nothing else).
        shuffle: shuffle every epoch (in a new, seeded order).
        outputs: optional list of output names of a multi-output model that
            all learn the same labels: each batch's labels
            become `{name: y}`.

    Returns:
        A dict of `model.fit` keyword arguments: `x` (a dataset holding the
        labels too), `shuffle=False` (the dataset shuffles itself) and, on
        TensorFlow, `steps_per_epoch`.
    """
    x, y = _check_arrays(x, y)
    batch_size = v.check_int("batch_size", batch_size, low=1)
    seed = v.check_int("seed", seed, low=0)
    v.check_bool("shuffle", shuffle)
    names = _labels(outputs)
    steps = math.ceil(len(x) / batch_size)
    import keras

    if keras.backend.backend() != "tensorflow":
        return {"x": _sequence_class()(x, y, batch_size, seed, shuffle, names), "shuffle": False}

    import tensorflow as tf

    n = len(x)
    xs = tf.constant(x)
    ys = tf.constant(y)

    def epoch_batches(epoch):
        if shuffle:
            # A stateless shuffle: the order is a function of (seed, epoch) only.
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        else:
            order = tf.range(n, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    # An endless stream of epochs; `steps_per_epoch` cuts it, and Keras keeps
    # the iterator between epochs, so epoch e gets permutation e.
    ds = (tf.data.Dataset.range(2 ** 62)
          .flat_map(epoch_batches)
          .map(lambda idx: (tf.gather(xs, idx), _replicate(tf.gather(ys, idx), names)),
               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))
    return {"x": _untuned(ds), "steps_per_epoch": steps, "shuffle": False}


def _untuned(ds):
    """`ds` with tf.data's autotuning off (its parallel map and prefetch at their defaults).

    With autotuning on, the end of a `fit` (its iterators destroyed) could
    wait for the autotuner's current sleep to end, whose period doubles
    from milliseconds to seconds: many ResNet-18 fits of a few seconds
    lasted as long as the sum of the first ten periods, about twice their
    training's time ("Keras's fit and evaluate loops" in the search
    benchmark's `--search-case resnet18` rows,
    `benchmarks/RESULTS_search_resnet18.md` and its history). Gathering
    batches of arrays already in memory has nothing to tune; the batches
    are the same either way.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _replicate(y, names):
    return y if names is None else {name: y for name in names}


def eval_data(x, y, *, batch_size=256, outputs=None):
    """Evaluation input (validation or test), in order, for `model.evaluate(**...)`.

    Args:
        x: examples.
        y: labels.
        batch_size: examples per batch. Defaults to 256.
        outputs: see `train_data`.

    Returns:
        A dict with `x`: a cached, prefetched `tf.data.Dataset` on
        TensorFlow, a `PyDataset` elsewhere. Pass `eval_data(...)["x"]` as
        `validation_data`.
    """
    x, y = _check_arrays(x, y)
    batch_size = v.check_int("batch_size", batch_size, low=1)
    names = _labels(outputs)
    import keras

    if keras.backend.backend() != "tensorflow":
        return {"x": _sequence_class()(x, y, batch_size, 0, False, names)}
    import tensorflow as tf

    ds = (tf.data.Dataset.from_tensor_slices((x, _replicate(y, names))).batch(batch_size)
          .cache().prefetch(tf.data.AUTOTUNE))
    return {"x": _untuned(ds)}
