"""cnnzoo.data: the bundled digits, shapes, .npz files, image folders, bad input."""

import os

import numpy as np
import pytest
from PIL import Image

from cnnzoo import data


def _check_splits(ds, n_total, num_classes):
    parts = [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]
    assert sum(len(y) for _, y in parts) == n_total
    for x, y in parts:
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.ndim == 4 and x.shape[0] == len(y)
        assert x.min() >= 0.0 and x.max() <= 255.0
        assert y.min() >= 0 and y.max() < num_classes
    assert ds.num_classes == num_classes == len(ds.class_names)


def test_digits_default():
    ds = data.load_dataset()
    _check_splits(ds, 1797, 10)
    assert ds.input_shape == (8, 8, 1)
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.x_train.max() == 255.0  # 16 grey levels scaled to 0-255
    # 15% / 15% of 1,797, stratified: each class holds its share in every split.
    assert len(ds.y_val) == 270 - 1 or len(ds.y_val) == 270
    for y in (ds.y_val, ds.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.max() - counts.min() <= 2
    # Splits are disjoint: no image appears in two of them.
    flat = [x.reshape(len(x), -1) for x in (ds.x_train, ds.x_val, ds.x_test)]
    rows = np.concatenate(flat)
    assert len(np.unique(rows, axis=0)) >= len(rows) - 20  # digits has a few true duplicates


def test_seeded_and_different_seeds_differ():
    a = data.load_dataset("digits", num_samples=200, seed=3)
    b = data.load_dataset("digits", num_samples=200, seed=3)
    c = data.load_dataset("digits", num_samples=200, seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)
    _check_splits(a, 200, 10)
    assert np.bincount(a.y_train, minlength=10).min() >= 13  # a stratified subset


def test_digits_resized():
    ds = data.load_dataset("digits", image_size=(12, 10), num_samples=50)
    assert ds.input_shape == (12, 10, 1)
    _check_splits(ds, 50, 10)


def test_shapes():
    ds = data.load_dataset("shapes", image_size=16, num_samples=60, seed=1)
    assert ds.input_shape == (16, 16, 1)
    assert ds.class_names == ["circle", "square", "triangle"]
    _check_splits(ds, 60, 3)
    x, y = data.make_shapes(30, image_size=20, seed=1)
    x2, y2 = data.make_shapes(30, image_size=20, seed=1)
    np.testing.assert_array_equal(x, x2)
    assert np.bincount(y).tolist() == [10, 10, 10]
    # The three shapes differ in area (circle > square > triangle at the same radius),
    # so the classes are told apart by real pixels, not by noise.
    bright = [(x[y == k] > 120).mean() for k in range(3)]
    assert bright[0] > bright[1] > bright[2]


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 1), (np.float32, 1 / 255.0)])
def test_npz(tmp_path, dtype, scale):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6, 5)).astype(np.float32)
    y = np.arange(40) % 4
    path = tmp_path / "toy.npz"
    np.savez(path, x=(x * scale).astype(dtype), y=y, class_names=np.array(list("abcd")))
    ds = data.load_dataset(str(path), validation_split=0.25, test_split=0.25)
    assert ds.input_shape == (6, 5, 1) and ds.class_names == list("abcd")
    assert ds.name == "toy.npz" and ds.source == str(path)
    _check_splits(ds, 40, 4)
    # Pixels stored in [0, 1] come back as 0-255.
    got = np.sort(np.concatenate([ds.x_train, ds.x_val, ds.x_test]).ravel())
    np.testing.assert_allclose(got, np.sort(x.ravel()), atol=1e-3)


def test_npz_without_class_names_nhwc(tmp_path):
    path = tmp_path / "rgb.npz"
    np.savez(path, x=np.full((12, 4, 4, 3), 7, np.uint8), y=np.arange(12) % 3)
    ds = data.load_dataset(path, validation_split=0.25, test_split=0.25)
    assert ds.input_shape == (4, 4, 3) and ds.class_names == ["0", "1", "2"]


def _png(path, size=(8, 8), mode="L", value=100):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * len(mode)).save(path)


def _folder(root, n=4, **kwargs):
    for cls in ("cat", "dog"):
        for i in range(n):
            _png(os.path.join(root, cls, f"{i}.png"), value=50 + 100 * (cls == "dog"), **kwargs)
    return root


def test_folder(tmp_path):
    root = _folder(str(tmp_path / "pets"))
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image")  # ignored
    ds = data.load_dataset(root, validation_split=0.25, test_split=0.25)
    assert ds.class_names == ["cat", "dog"] and ds.input_shape == (8, 8, 1)
    _check_splits(ds, 8, 2)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        np.testing.assert_array_equal(x[:, 0, 0, 0], np.where(y == 1, 150.0, 50.0))


def test_folder_mixed_sizes_need_image_size(tmp_path):
    root = _folder(str(tmp_path / "pets"))
    odd = os.path.join(root, "dog", "big.png")
    _png(odd, size=(10, 12))
    with pytest.raises(ValueError, match=r"big\.png is 12x10.*image_size \(--image-size\)"):
        data.load_dataset(root)
    ds = data.load_dataset(root, image_size=9, validation_split=0.2, test_split=0.2)
    assert ds.input_shape == (9, 9, 1)


def test_folder_mixed_channels(tmp_path):
    root = _folder(str(tmp_path / "pets"))
    _png(os.path.join(root, "cat", "color.png"), mode="RGB")
    with pytest.raises(ValueError, match=r"color\.png has 3.*color_mode.*\(--color-mode\)"):
        data.load_dataset(root)
    assert data.load_dataset(root, color_mode="rgb").input_shape == (8, 8, 3)
    assert data.load_dataset(root, color_mode="grayscale").input_shape == (8, 8, 1)


def test_color_mode_converts_arrays_as_pil_converts_images(tmp_path):
    grey = data.load_dataset("digits", num_samples=100)
    rgb = data.load_dataset("digits", num_samples=100, color_mode="rgb")
    assert rgb.input_shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb.x_train, np.repeat(grey.x_train, 3, axis=-1))
    pixels = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", x=pixels, y=np.arange(10) % 2)
    ds = data.load_dataset(str(tmp_path / "rgb.npz"), color_mode="grayscale",
                           validation_split=0.2, test_split=0.2)
    assert ds.input_shape == (4, 4, 1)
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    want = np.stack([np.asarray(Image.fromarray(p).convert("L"), np.float32)[..., None]
                     for p in pixels])
    # PIL rounds its luma to integers: within half a grey level, image by image.
    order = [int(np.argmin(np.abs(want - image).sum(axis=(1, 2, 3)))) for image in x]
    assert sorted(order) == list(range(10))
    np.testing.assert_allclose(x, want[order], atol=0.5 + 1e-3)


def _bad_npz(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    x = np.zeros((10, 4, 4), np.uint8)
    y = np.arange(10) % 2
    if kind == "corrupt":
        path.write_bytes(b"this is not a zip file at all")
    elif kind == "truncated":
        np.savez(path, x=x, y=y)
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "length":
        np.savez(path, x=x, y=y[:7])
    elif kind == "range":
        np.savez(path, x=x, y=y, class_names=np.array(["a"]))
    elif kind == "negative":
        np.savez(path, x=x, y=y - 1)
    elif kind == "keys":
        np.savez(path, images=x, labels=y)
    elif kind == "shape":
        np.savez(path, x=np.zeros((10, 16)), y=y)
    elif kind == "pixels":
        np.savez(path, x=x.astype(np.float32) - 1.0, y=y)
    elif kind == "one_class":
        np.savez(path, x=x, y=np.zeros(10, np.int32))
    return path


@pytest.mark.parametrize("kind,message", [
    ("corrupt", "not a valid .npz"),
    ("truncated", "not a valid .npz"),
    ("length", "same length; x has 10 images and y 7"),
    ("range", r"labels in \[0, 0\].*label 1 at index 1"),
    ("negative", r"label -1 at index 0"),
    ("keys", "hold arrays `x` and `y`"),
    ("shape", r"\(N, H, W\)"),
    ("pixels", r"raw pixels in \[0, 255\]"),
    ("one_class", r"at least 2 classes.*has 1\. Received: num_classes=1"),
])
def test_bad_npz(tmp_path, kind, message):
    path = _bad_npz(tmp_path, kind)
    with pytest.raises(ValueError, match=message) as info:
        data.load_dataset(str(path))
    text = str(info.value)
    assert path.stem in text and "Received:" in text and "\n" not in text
    assert ".." not in text


def test_bad_folders_and_names(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="it is empty"):
        data.load_dataset(str(empty))
    (empty / "cat").mkdir()
    with pytest.raises(ValueError, match=r"cat has none"):
        data.load_dataset(str(empty))
    _png(str(empty / "cat" / "0.png"))
    with pytest.raises(ValueError, match=r"at least 2 classes to classify; empty has 1"):
        data.load_dataset(str(empty))
    root = _folder(str(tmp_path / "pets"))
    broken = os.path.join(root, "cat", "broken.png")
    with open(os.path.join(root, "cat", "0.png"), "rb") as f:
        png = f.read()
    with open(broken, "wb") as f:
        f.write(png[: len(png) // 2])
    with pytest.raises(ValueError, match=r"broken\.png.*corrupt or truncated"):
        data.load_dataset(root)
    with pytest.raises(ValueError, match="does not exist"):
        data.load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match=r"Did you mean 'digits'"):
        data.load_dataset("digts")
    text_file = tmp_path / "labels.csv"
    text_file.write_text("1,2")
    with pytest.raises(ValueError, match="neither"):
        data.load_dataset(str(text_file))


@pytest.mark.parametrize("kwargs", [
    {"validation_split": 1.0}, {"test_split": -0.1}, {"validation_split": 0.6, "test_split": 0.5},
    {"num_samples": 0}, {"num_samples": 5000}, {"image_size": (8,)}, {"seed": -1},
    {"color_mode": "cmyk"}, {"num_samples": 2.5},
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received:"):
        data.load_dataset("digits", **kwargs)


@pytest.mark.parametrize("color_mode, channels", [(None, 1), ("grayscale", 1), ("rgb", 3)])
def test_16_bit_grey_images_are_scaled_not_clipped(tmp_path, color_mode, channels):
    # PIL's convert("L") of a 16-bit image clips at 255: nearly all white.
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    pixels = data.read_image(tmp_path / "ramp.png", color_mode=color_mode)
    assert pixels.shape == (64, 64, channels)
    for c in range(channels):
        np.testing.assert_allclose(pixels[..., c], ramp / 257.0, rtol=1e-6)


@pytest.mark.parametrize("high, scale", [(1.0, 255.0), (200.0, 1.0)])
def test_float_images_follow_the_npz_rule(tmp_path, high, scale):
    values = np.linspace(0, high, 16, dtype=np.float32).reshape(4, 4)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    for color_mode in (None, "grayscale"):
        np.testing.assert_allclose(
            data.read_image(tmp_path / "f.tif", color_mode=color_mode)[..., 0],
            values * scale, rtol=1e-6)


def test_float_images_outside_the_range_are_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 1000.0, np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match=r"span \[1000, 1000\].*Received: path="):
        data.read_image(tmp_path / "f.tif")


def test_npz_class_names_stored_as_bytes(tmp_path):
    np.savez(tmp_path / "b.npz", x=np.zeros((6, 4, 4), np.uint8), y=np.arange(6) % 3,
             class_names=np.array([b"ant", b"bee", b"cat"]))
    assert data.load_dataset(tmp_path / "b.npz").class_names == ["ant", "bee", "cat"]


@pytest.mark.parametrize("counts", [[10, 1, 1, 1], [4, 4, 1], [3, 7, 7, 1, 1], [2, 2, 2]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_class_keeps_a_training_example(tmp_path, counts, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    np.savez(tmp_path / "s.npz", x=np.zeros((len(y), 4, 4), np.uint8), y=y)
    ds = data.load_dataset(tmp_path / "s.npz", seed=seed)
    assert set(ds.y_train) == set(range(len(counts)))
    _check_splits(ds, len(y), len(counts))


def test_each_split_asked_for_gets_an_example(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.zeros((10, 4, 4), np.uint8), y=np.arange(10) % 2)
    ds = data.load_dataset(tmp_path / "s.npz", validation_split=0.05, test_split=0.05)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (8, 1, 1)
    ds = data.load_dataset(tmp_path / "s.npz", validation_split=0.05, test_split=0.0)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (9, 1, 0)


def test_class_folders_are_read_recursively_as_keras_does(tmp_path):
    root = _folder(str(tmp_path / "pets"), n=2)
    _png(os.path.join(root, "cat", "2019", "a.png"), value=50)
    _png(os.path.join(root, "cat", ".cache", "b.png"), value=50)  # hidden: skipped
    ds = data.load_dataset(root, validation_split=0.0, test_split=0.0)
    assert sorted(ds.y_train.tolist()) == [0, 0, 0, 1, 1]


def test_channels_first_npz_is_refused(tmp_path):
    np.savez(tmp_path / "cf.npz", x=np.zeros((6, 3, 16, 16), np.uint8), y=np.arange(6) % 2)
    with pytest.raises(ValueError, match=r"channels-first.*Received: x.shape=\(6, 3, 16, 16\)"):
        data.load_dataset(tmp_path / "cf.npz")


def test_npz_labels_that_skip_a_class_need_class_names(tmp_path):
    x = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "one_based.npz", x=x, y=np.arange(6) % 3 + 1)
    with pytest.raises(ValueError, match=r"labels 0\.\.3.*label 0 has none.*Received: y="):
        data.load_dataset(tmp_path / "one_based.npz")
    # Named classes may lack examples (a subset of a larger label set).
    np.savez(tmp_path / "named.npz", x=x, y=np.arange(6) % 3 + 1,
             class_names=np.array(["none", "a", "b", "c"]))
    assert data.load_dataset(tmp_path / "named.npz").num_classes == 4


def test_a_file_that_is_not_an_image_is_named_as_such(tmp_path):
    (tmp_path / "data.npz").write_bytes(b"PK\x03\x04 not an image")
    with pytest.raises(ValueError, match=r"not an image file\? Images are \.png"):
        data.read_image(tmp_path / "data.npz")


def test_folder_skip_bad_images_lists_them_once_and_goes_on(tmp_path, capsys):
    root = _folder(str(tmp_path / "pets"))
    with open(os.path.join(root, "cat", "0.png"), "rb") as f:
        png = f.read()
    for name in ("cat/half.png", "dog/sub/empty.jpg"):
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        with open(os.path.join(root, name), "wb") as f:
            f.write(png[: len(png) // 2] if "half" in name else b"")
    with pytest.raises(ValueError, match=r"half\.png.*corrupt or truncated"):
        data.load_dataset(root)  # the default: the first bad file stops it
    ds = data.load_dataset(root, skip_bad_images=True, validation_split=0.25, test_split=0.25)
    _check_splits(ds, 8, 2)  # the 8 good images, as without the bad ones
    assert sorted(os.path.relpath(p, root) for p in ds.skipped) == [
        os.path.join("cat", "half.png"), os.path.join("dog", "sub", "empty.jpg")]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Skipped 2 unreadable image file(s) of ")
    assert "half.png (corrupt or truncated?: " in err and "empty.jpg (corrupt or truncated?: " in err
    for i in range(4):
        os.remove(os.path.join(root, "dog", f"{i}.png"))
    with pytest.raises(ValueError, match=r"every image of dog is unreadable"):
        data.load_dataset(root, skip_bad_images=True)
    with pytest.raises(ValueError, match=r"Received: skip_bad_images='yes'"):
        data.load_dataset(root, skip_bad_images="yes")
