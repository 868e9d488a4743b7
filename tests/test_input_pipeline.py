"""`cnnzoo.input_pipeline`: seeded batch orders, whole epochs, labels for several outputs."""

import math

import keras
import numpy as np
import pytest

from cnnzoo import input_pipeline


def _labels_of_epochs(data, epochs):
    """The label order a model would see over `epochs` epochs."""
    ds = data["x"]
    seen = []
    if "steps_per_epoch" in data:  # tf.data: one endless stream of epochs
        it = iter(ds)
        for _ in range(epochs):
            seen.append(np.concatenate([np.asarray(next(it)[1])
                                        for _ in range(data["steps_per_epoch"])]))
        return seen
    for _ in range(epochs):  # PyDataset: Keras asks for 0 .. len - 1 each epoch
        ds.on_epoch_begin()
        seen.append(np.concatenate([np.asarray(ds[i][1]) for i in range(len(ds))]))
        ds.on_epoch_end()
    return seen


@pytest.mark.multibackend
@pytest.mark.parametrize("n", [50, 8], ids=["7 batches", "one batch"])
def test_a_peek_before_training_does_not_move_the_batch_order(n):
    # Keras peeks at the first batch to build a model that has not been
    # built: a new model and one built earlier must see the same batches.
    x = np.arange(n, dtype="float32").reshape(n, 1)
    y = np.arange(n)
    plain = _labels_of_epochs(input_pipeline.train_data(x, y, batch_size=8, seed=3), 2)
    data = input_pipeline.train_data(x, y, batch_size=8, seed=3)
    if "steps_per_epoch" not in data:
        data["x"][0]
        data["x"].on_epoch_end()  # what Keras's `EpochIterator.reset()` calls next
    peeked = _labels_of_epochs(data, 2)
    for a, b in zip(plain, peeked):
        np.testing.assert_array_equal(a, b)


@pytest.mark.multibackend
def test_batch_order_depends_only_on_the_seed():
    x = np.arange(50, dtype="float32").reshape(50, 1)
    y = np.arange(50)
    keras.utils.set_random_seed(1)
    first = _labels_of_epochs(input_pipeline.train_data(x, y, batch_size=8, seed=3), 2)
    keras.utils.set_random_seed(99)  # other global random state: same order
    again = _labels_of_epochs(input_pipeline.train_data(x, y, batch_size=8, seed=3), 2)
    other = _labels_of_epochs(input_pipeline.train_data(x, y, batch_size=8, seed=4), 2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # Every epoch is a permutation of the data, a new one each epoch.
    assert all(sorted(e) == list(range(50)) for e in first)
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.multibackend
def test_pipeline_labels_for_several_outputs_and_fit():
    x = np.random.default_rng(0).uniform(size=(20, 3)).astype("float32")
    y = np.arange(20) % 2
    inputs = keras.Input((3,))
    outs = [keras.layers.Dense(2, activation="softmax", name=n)(inputs) for n in ("a", "b")]
    model = keras.Model(inputs, outs)
    model.compile("adam", loss={"a": "sparse_categorical_crossentropy",
                                "b": "sparse_categorical_crossentropy"})
    train = input_pipeline.train_data(x, y, batch_size=8, outputs=["a", "b"])
    val = input_pipeline.eval_data(x, y, outputs=["a", "b"])
    history = model.fit(**train, validation_data=val["x"], epochs=2, verbose=0)
    assert {"a_loss", "b_loss", "val_a_loss"} <= set(history.history)


@pytest.mark.parametrize("kwargs", [
    {"x": np.zeros((4, 2)), "y": np.zeros(3), "batch_size": 2},
    {"x": np.zeros((4, 2)), "y": np.zeros(4), "batch_size": 0},
    {"x": np.zeros((0, 2)), "y": np.zeros(0), "batch_size": 2},
    {"x": np.zeros((4, 2)), "y": np.zeros(4), "batch_size": 2, "outputs": "a"},
])
def test_pipeline_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        input_pipeline.train_data(**kwargs)


@pytest.mark.multibackend
@pytest.mark.parametrize("n, batch_size", [(50, 8), (48, 8), (3, 8)])
def test_an_epoch_is_every_example_once_in_whole_batches(n, batch_size):
    x = np.arange(n, dtype="float32").reshape(n, 1)
    y = np.arange(n)
    data = input_pipeline.train_data(x, y, batch_size=batch_size, seed=0)
    assert data["shuffle"] is False  # the pipeline shuffles itself, once
    if "steps_per_epoch" in data:
        assert data["steps_per_epoch"] == math.ceil(n / batch_size)
    else:
        assert len(data["x"]) == math.ceil(n / batch_size)
    (epoch,) = _labels_of_epochs(data, 1)
    assert sorted(epoch) == list(range(n))


@pytest.mark.multibackend
def test_shuffle_false_and_eval_data_keep_the_order():
    x = np.arange(20, dtype="float32").reshape(20, 1)
    y = np.arange(20)
    unshuffled = input_pipeline.train_data(x, y, batch_size=6, shuffle=False)
    for epoch in _labels_of_epochs(unshuffled, 2):
        np.testing.assert_array_equal(epoch, y)
    ds = input_pipeline.eval_data(x, y, batch_size=6)["x"]
    if isinstance(ds, keras.utils.PyDataset):
        batches = [np.asarray(ds[i][1]) for i in range(len(ds))]
    else:
        batches = [np.asarray(labels) for _, labels in ds]
    assert [len(b) for b in batches] == [6, 6, 6, 2]
    np.testing.assert_array_equal(np.concatenate(batches), y)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    a = input_pipeline.epoch_order(30, 3, 1)
    assert sorted(a) == list(range(30))
    np.testing.assert_array_equal(a, input_pipeline.epoch_order(30, 3, 1))
    assert not np.array_equal(a, input_pipeline.epoch_order(30, 3, 2))
    assert not np.array_equal(a, input_pipeline.epoch_order(30, 4, 1))


@pytest.mark.parametrize("call, kwargs, received", [
    ("train_data", {"x": np.zeros((4, 2)), "y": np.zeros(4), "batch_size": 2, "seed": -1},
     "seed=-1"),
    ("train_data", {"x": np.zeros((4, 2)), "y": np.zeros(4), "batch_size": 2, "shuffle": 1},
     "shuffle=1"),
    ("train_data", {"x": np.zeros(4), "y": np.zeros(4), "batch_size": 2}, r"x.shape=\(4,\)"),
    ("eval_data", {"x": np.zeros((4, 2)), "y": np.zeros(3)}, r"\(len\(x\), len\(y\)\)=\(4, 3\)"),
    ("eval_data", {"x": np.zeros((4, 2)), "y": np.zeros(4), "batch_size": 0}, "batch_size=0"),
    ("eval_data", {"x": np.zeros((4, 2)), "y": np.zeros(4), "outputs": ["a", 1]},
     r"outputs=\['a', 1\]"),
])
def test_bad_arguments_name_what_they_received(call, kwargs, received):
    with pytest.raises(ValueError, match=rf"Received: {received}$"):
        getattr(input_pipeline, call)(**kwargs)


def test_tensorflow_pipelines_run_untuned():
    # tf.data's autotuner made the end of a fit wait for its sleep (up to
    # 5 s; `input_pipeline._untuned`): both pipelines leave it off.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data pipelines are TensorFlow's")
    x = np.zeros((10, 2), "float32")
    y = np.arange(10)
    for data in (input_pipeline.train_data(x, y, batch_size=4),
                 input_pipeline.eval_data(x, y, batch_size=4)):
        assert data["x"].options().autotune.enabled is False
