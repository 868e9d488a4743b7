"""Data in memory: arrays, pipelines and Datasets for train and search; their records; errors."""

import json

import keras
import numpy as np
import pytest

import tuning
from cnnzoo import data as D
from cnnzoo import train as T

# Small and fast: 1 epoch of simple_cnn, float32 so results do not depend on bf16 hardware.
KW = dict(epochs=1, batch_size=32, precision="float32", verbose=0, seed=3)
SEARCH = dict(max_trials=1, epochs=1, batch_size=35, precision="float32", quiet=True,
              export=False)


@pytest.fixture(scope="module")
def arrays():
    """160 digits as uint8 pixels `(N, 8, 8, 1)` and int labels, as a user would hold them."""
    ds = D.load_dataset("digits", num_samples=160, seed=0)
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test]).astype("int64")
    return np.round(x).astype("uint8"), y


@pytest.fixture
def npz(arrays, tmp_path):
    path = tmp_path / "digits.npz"
    np.savez(path, x=arrays[0], y=arrays[1])
    return path


def _same_splits(a, b):
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, f"x_{split}"), getattr(b, f"x_{split}"))
        np.testing.assert_array_equal(getattr(a, f"y_{split}"), getattr(b, f"y_{split}"))


def test_arrays_and_pipelines_load_as_the_same_arrays_in_a_file_do(arrays, npz):
    import tensorflow as tf

    x, y = arrays
    from_file = D.load_dataset(npz, seed=5)
    assert from_file.x_train.dtype == np.float32 and from_file.origin is None
    as_arrays = D.load_dataset((x, y), seed=5)
    _same_splits(from_file, as_arrays)  # the same splits, the same float32 0-255 pixels
    assert as_arrays.origin == {"form": "arrays", "x": "ndarray(shape=(160, 8, 8, 1), "
                                "dtype=uint8)", "y": "ndarray(shape=(160,), dtype=int64)",
                                "sha256": D.content_hash([x, y])}
    # Floats in [0, 1] are scaled to 0-255, as a .npz file's are; a list works too.
    scaled = D.load_dataset((x / np.float32(255), list(y)), seed=5)
    np.testing.assert_allclose(scaled.x_train, from_file.x_train, atol=1e-4)
    # A pipeline, batched or not, is read once into the same arrays.
    for pipe in (tf.data.Dataset.from_tensor_slices((x, y)).batch(50),
                 tf.data.Dataset.from_tensor_slices((x, y))):
        read = D.load_dataset(pipe, seed=5)
        _same_splits(from_file, read)
        assert read.origin["form"] == "tf.data.Dataset" and "read once" in read.origin["read"]
        assert "not in every epoch" in D.origin_text(read.origin)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[i * 40:(i + 1) * 40], y[i * 40:(i + 1) * 40]

    _same_splits(from_file, D.load_dataset(Batches(), seed=5))
    # A Dataset comes back as it is.
    assert D.load_dataset(from_file) is from_file


def test_validation_data_replaces_the_validation_split(arrays):
    x, y = arrays
    ds = D.load_dataset((x[:120], y[:120]), validation_data=(x[120:], y[120:]), seed=1)
    np.testing.assert_array_equal(ds.x_val, x[120:].astype("float32"))
    assert len(ds.y_train) + len(ds.y_test) == 120 and len(ds.y_test) == 18  # 15 % of 120
    assert ds.origin["validation_data"]["x"] == "ndarray(shape=(40, 8, 8, 1), dtype=uint8)"
    # Converted as the data are: image_size and color_mode apply to both.
    grown = D.load_dataset((x[:120], y[:120]), validation_data=(x[120:], y[120:]),
                           image_size=12, color_mode="rgb")
    assert grown.x_val.shape == (40, 12, 12, 3) == (len(grown.x_val),) + grown.input_shape


def test_class_names_name_the_classes_of_data_in_memory(arrays, npz):
    x, y = arrays
    names = [f"digit {i}" for i in range(10)]
    ds = D.load_dataset((x, y), class_names=names, seed=1)
    assert ds.class_names == names and ds.num_classes == 10
    _same_splits(ds, D.load_dataset((x, y), seed=1))  # names only: the same splits
    assert D.load_dataset((x, y), seed=1).class_names == [str(i) for i in range(10)]
    # A named class need not have examples; a label beyond the names is refused.
    ds = D.load_dataset((x[y < 9], y[y < 9]), class_names=names)
    assert ds.num_classes == 10
    with pytest.raises(ValueError, match=r"\[0, 8\].*label 9 .*Received: y=9$"):
        D.load_dataset((x, y), class_names=names[:9])
    with pytest.raises(ValueError, match=r"distinct `class_names`"):
        D.load_dataset((x, y), class_names=["a"] * 10)
    with pytest.raises(ValueError, match=r"a list of names.*Received: class_names='digits'$"):
        D.load_dataset((x, y), class_names="digits")
    # The validation data's labels must be among the names too.
    with pytest.raises(ValueError, match=r"of `validation_data`"):
        D.load_dataset((x[y < 5], y[y < 5]), class_names=names[:5], validation_data=(x, y))
    # Elsewhere the data name their classes themselves.
    for source in ("digits", npz):
        with pytest.raises(ValueError, match=r"only with data given in memory.*Received: "
                                             r"class_names="):
            D.load_dataset(source, class_names=names)


def test_train_gives_the_same_metrics_from_a_file_arrays_and_a_dataset(arrays, npz, tmp_path):
    x, y = arrays
    from_file = T.train("simple_cnn", npz, out=tmp_path / "file", **KW)
    as_arrays = T.train("simple_cnn", (x, y), out=tmp_path / "arrays", **KW)
    as_dataset = T.train("simple_cnn", D.load_dataset(npz, seed=3), out=tmp_path / "ds", **KW)
    assert from_file.test_metrics == as_arrays.test_metrics == as_dataset.test_metrics
    assert from_file.history == as_arrays.history == as_dataset.history
    record = json.loads((tmp_path / "arrays" / T.RUN_FILE).read_text())["config"]["data"]
    assert record["dataset"] == "arrays" and record["sha256"] == D.content_hash([x, y])
    assert record["x"] == "ndarray(shape=(160, 8, 8, 1), dtype=uint8)"
    assert "ndarray" not in json.dumps(json.loads((tmp_path / "file" / T.RUN_FILE).read_text()))
    # The same arrays (another copy) resume; other arrays are refused, naming the difference.
    again = T.train("simple_cnn", (x.copy(), y.copy()), out=tmp_path / "arrays", **KW)
    assert again.resumed_from == 1 and again.test_metrics == as_arrays.test_metrics
    other = x.copy()
    other[0, 0, 0, 0] ^= 1
    with pytest.raises(ValueError, match=r"different configuration \(data\.sha256: '\w+' -> "
                                         r"'\w+'\).*Received: out="):
        T.train("simple_cnn", (other, y), out=tmp_path / "arrays", **KW)
    changed = D.load_dataset(npz, seed=4)  # other splits
    with pytest.raises(ValueError, match=r"\(data\.sha256: "):
        T.train("simple_cnn", changed, out=tmp_path / "ds", **KW)


def test_train_validates_on_validation_data(arrays, tmp_path):
    x, y = arrays
    result = T.train("simple_cnn", (x[:120], y[:120]), validation_data=(x[120:], y[120:]),
                     out=tmp_path / "run", **KW)
    record = json.loads((tmp_path / "run" / T.RUN_FILE).read_text())
    assert record["data"]["num_val"] == 40 and record["config"]["data"]["validation_split"] is None
    got = result.model.evaluate(x[120:].astype("float32"), y[120:], verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(result.val_metrics["loss"], rel=1e-5)
    other = x[120:].copy()
    other[0, 0, 0, 0] ^= 1
    with pytest.raises(ValueError, match=r"data\.validation_data\.sha256: "):
        T.train("simple_cnn", (x[:120], y[:120]), validation_data=(other, y[120:]),
                out=tmp_path / "run", **KW)


def test_a_search_from_arrays_is_the_search_from_their_file(arrays, npz, tmp_path):
    x, y = arrays
    from_file = tuning.search("simple_cnn", str(npz), out=str(tmp_path / "file"), **SEARCH)
    as_arrays = tuning.search("simple_cnn", (x, y), out=str(tmp_path / "arrays"), **SEARCH)
    assert from_file.best["score"] == as_arrays.best["score"]
    assert from_file.best["values"] == as_arrays.best["values"]
    settings = json.loads((tmp_path / "arrays" / "search.json").read_text())
    assert settings["data"]["sha256"] == D.content_hash([x, y])
    assert settings["validation_data"] is None
    again = tuning.search("simple_cnn", (x.copy(), y), out=str(tmp_path / "arrays"), **SEARCH)
    assert again.resumed and again.best["score"] == as_arrays.best["score"]
    with pytest.raises(ValueError, match=r"other settings \(data\.sha256: .*Received: out="):
        tuning.search("simple_cnn", (x[::-1].copy(), y[::-1].copy()),
                      out=str(tmp_path / "arrays"), **SEARCH)
    ds = D.load_dataset((x, y))
    val = tuning.search("simple_cnn", ds, validation_data=None, out=str(tmp_path / "ds"),
                        **SEARCH)
    assert val.best is not None
    split = tuning.search("simple_cnn", (x[:120], y[:120]), validation_data=(x[120:], y[120:]),
                          out=str(tmp_path / "val"), **SEARCH)
    settings = json.loads((tmp_path / "val" / "search.json").read_text())
    assert settings["validation_data"]["x"] == "ndarray(shape=(40, 8, 8, 1), dtype=uint8)"
    assert split.best is not None
    from tuning.driver import train_command
    from tuning.config import SearchConfig

    call = train_command(SearchConfig(data=(x, y), validation_data=(x, y), out=str(tmp_path)),
                         {"dropout_rate": 0.2})
    assert call.startswith("cnnzoo.train.train('simple_cnn', data, validation_data="
                           "validation_data, dropout_rate=0.2") and "ndarray" not in call


def test_the_search_says_when_images_are_resized_inside_the_model():
    from tuning.driver import _resize_text

    assert _resize_text("vgg16", (8, 8, 1), None, None) == (
        "; 8x8 images, resized to 32x32 inside the model: vgg16's minimum")
    assert _resize_text("vgg16", (40, 40, 1), None, None) == ""
    assert _resize_text("simple_cnn", (8, 8, 1), 16, None) == (
        "; 8x8 images, resized to 16x16 inside the model: input_size")


BIG = np.zeros((2000, 32, 32, 3), "uint8")


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(data=BIG), r"Expected a dataset name .*Received: name_or_path=ndarray\(shape=\(2000, "
                     r"32, 32, 3\), dtype=uint8\)$"),
    (dict(data=(BIG,)), r"as \(x, y\).*Received: name_or_path=\(ndarray\(shape=\(2000, 32, "
                        r"32, 3\), dtype=uint8\),\)$"),
    (dict(data=(BIG, np.zeros(5))), r"same length.*Received: len\(y\)=5$"),
    (dict(data=(BIG + 300.0, np.arange(2000) % 2)), r"\[0, 255\].*Received: x=ndarray\("
                                                    r"shape=\(2000, 32, 32, 3\), dtype=float64\)$"),
    (dict(data=(BIG, np.eye(2)[np.arange(2000) % 2])), r"one-hot.*Received: y=ndarray\(shape="
                                                       r"\(2000, 2\), dtype=float64\)$"),
    (dict(data=(BIG, np.arange(2000) % 2), validation_data=(BIG[:5, :8], np.zeros(5))),
     r"training images' shape \(32, 32, 3\).*Received: validation_data=\(ndarray"),
    (dict(data=(BIG.astype(object), np.arange(2000) % 2)), r"numeric arrays.*dtype=object\), "),
    (dict(data=D.Dataset(*[np.zeros((2, 8, 8, 1))] * 6, class_names=["a", "b"], name="d",
                         source="s"), validation_data=(BIG, np.zeros(2000))),
     r"no `validation_data` with a cnnzoo.data.Dataset.*Received: validation_data=\(ndarray"),
])
def test_bad_data_is_one_short_line_naming_the_arrays(kwargs, pattern, tmp_path):
    for run in (lambda: T.train("simple_cnn", out=tmp_path / "run", **KW, **kwargs),
                lambda: tuning.search("simple_cnn", out=str(tmp_path / "tune"), **SEARCH,
                                      **kwargs)):
        with pytest.raises(ValueError, match=pattern) as info:
            run()
        message = str(info.value)
        assert "\n" not in message and len(message) < 400
    assert not (tmp_path / "run").exists()


def test_a_pipeline_that_cannot_be_read_once_is_refused():
    import tensorflow as tf

    forever = tf.data.Dataset.from_tensor_slices((BIG[:4], np.zeros(4))).repeat()
    with pytest.raises(ValueError, match=r"finite .*without \.repeat\(\).*Received: "
                                         r"name_or_path=_RepeatDataset\(element_spec=\("
                                         r"TensorSpec\(shape=\(32, 32, 3\), dtype=uint8\)"):
        D.load_dataset(forever)
    weighted = tf.data.Dataset.from_tensor_slices((BIG[:4], np.zeros(4), np.ones(4)))
    with pytest.raises(ValueError, match=r"without sample weights; an element is 3 items"):
        D.load_dataset(weighted)
