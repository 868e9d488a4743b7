"""Datasets: the bundled digits, synthetic shapes, `.npz` arrays, image folders.

`load_dataset(name_or_path)` returns a `Dataset` with seeded, stratified
train / validation / test splits and class names. Images are raw pixels
(float32 in [0, 255], channels last); models built by
`cnnzoo.pipeline.build_classifier` rescale inside the model, so the same
pixels go to training, export and prediction. Nothing is downloaded.

Sources:

- `"digits"`: scikit-learn's bundled 1,797 handwritten 8x8 digits (the
  default). Their 0-16 grey levels are scaled to 0-255.
- `"shapes"`: circles, squares and triangles drawn with numpy at any size and
  count, seeded. Class names `circle`, `square`, `triangle`.
- a `.npz` file holding `x` (`N,H,W` or `N,H,W,C`; uint8, or float in
  [0, 255] or [0, 1]: floats whose maximum is at most 1 are scaled to 0-255),
  `y` (`N` integer labels 0..K-1) and optionally `class_names` (K strings).
- a folder with one sub-folder per class (sorted sub-folder names are the
  class names), read with Pillow; a class folder's own sub-folders are read
  too (as Keras does). Files whose extension is not an image extension are
  ignored; hidden files and folders too. 16-bit grey images are scaled to
  0-255; float images follow the `.npz` rule. Images of different
  sizes need `image_size`. Channels: with `color_mode=None` every image must
  have the same channel count (grey `L` -> 1, `LA` -> 2, `RGB`/palette -> 3,
  `RGBA` -> 4); mixed counts are an error that names the file, and
  `color_mode="grayscale"` or `"rgb"` converts every image instead.

Every problem (a missing path, a corrupt or truncated file, `x` and `y` of
different lengths, labels out of range, an empty folder, ...) raises a
`ValueError` that names the file and the problem.
"""

import dataclasses
import difflib
import os
import sys
import zipfile
import zlib

import numpy as np

from cnnzoo import _validation as v

NAMES = ("digits", "shapes")
SHAPE_CLASSES = ("circle", "square", "triangle")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm", ".pbm")
COLOR_MODES = (None, "grayscale", "rgb")
# Defaults of the synthetic dataset.
SHAPES_SIZE = 32
SHAPES_SAMPLES = 600


@dataclasses.dataclass
class Dataset:
    """Train, validation and test splits of one image dataset.

    Attributes:
        x_train, x_val, x_test: raw pixels, float32 in [0, 255], shape
            `(N, height, width, channels)`.
        y_train, y_val, y_test: int32 labels in `0..num_classes-1`.
        class_names: one name per class, in label order.
        name: the dataset's short name (`"digits"`, `"shapes"`, or the file
            or folder name).
        source: where it came from, in words (a path for files and folders).
        skipped: the unreadable image files left out (`skip_bad_images=True`).
        origin: what run and search records say of data given in memory
            (`(x, y)` arrays, a pipeline, `validation_data`): the form,
            each array's type, shape and dtype, and a content hash; `None`
            for a name or a path.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    name: str
    source: str
    skipped: list = dataclasses.field(default_factory=list)
    origin: dict = None

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        """`(height, width, channels)` of every image."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def describe(self):
        """A JSON-ready summary (no arrays), for run records and model cards."""
        return {
            "name": self.name,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "num_train": int(len(self.y_train)),
            "num_val": int(len(self.y_val)),
            "num_test": int(len(self.y_test)),
        }

    def fingerprint(self):
        """A hex digest of the six splits and the class names (`content_hash`)."""
        return content_hash([self.x_train, self.y_train, self.x_val, self.y_val, self.x_test,
                             self.y_test, np.asarray(self.class_names, str)])


def load_dataset(name_or_path="digits", *, image_size=None, num_samples=None,
                 validation_split=0.15, test_split=0.15, seed=0, color_mode=None,
                 skip_bad_images=False, validation_data=None, class_names=None):
    """Loads a dataset by name, path or arrays into stratified, seeded splits.

    Args:
        name_or_path: `"digits"` (default), `"shapes"`, a `.npz` file, a
            folder with one sub-folder of images per class, `(x, y)` NumPy
            arrays (as a `.npz` file's `x` and `y`: the same checks, pixel
            rule and splits), a finite `tf.data.Dataset` or a
            `keras.utils.PyDataset` of `(images, labels)` batches or
            examples (read once into such arrays: its own shuffling and
            random transformations are not repeated per epoch), or a
            `Dataset` (returned as it is: its splits are fixed).
        image_size: one int or `(height, width)`: every image is resized to
            it (bilinear). For `"shapes"`, the size they are drawn at
            (defaults to 32). Defaults to the images' own size.
        num_samples: use this many examples (a stratified, seeded subset;
            for `"shapes"`, how many to draw, defaults to 600). Defaults to
            all of them.
        validation_split: fraction of the examples held out for validation.
            Defaults to 0.15.
        test_split: fraction held out for the final test. Defaults to 0.15.
        seed: seeds the subset, the splits and the drawing of `"shapes"`.
        color_mode: `None` (keep each image's channels; mixed counts are an
            error), `"grayscale"` or `"rgb"` (convert every image: a folder's
            with PIL; arrays the same way, grey repeated into three channels,
            colour to grey by PIL's ITU-R 601-2 luma, alpha dropped).
        skip_bad_images: for a folder, leave out the image files that cannot
            be read (corrupt, truncated, not images), listing them once on
            standard error with their count. Defaults to `False`: the first
            one is a `ValueError` that names it.
        validation_data: `(x, y)` arrays or a pipeline (as `name_or_path`)
            to validate on, as `model.fit`'s: then `validation_split` is not
            used and the data are split into train (and test) only.
            Defaults to `None`.
        class_names: for data given in memory, one name per class in label
            order (labels `0..K-1` index them; a class may have no examples).
            Defaults to `None`: the names `"0"`..`"K-1"`. Named datasets,
            folders (one sub-folder per class) and `.npz` files (their
            `class_names` array) name their classes themselves.

    Returns:
        A `Dataset`; data given in memory are described in its `origin`.

    Example:

    >>> ds = load_dataset("digits", seed=0)
    >>> ds.input_shape, ds.num_classes
    ((8, 8, 1), 10)
    """
    size = _check_image_size(image_size)
    if num_samples is not None:
        num_samples = v.check_int("num_samples", num_samples, low=1)
    validation_split = v.check_number("validation_split", validation_split, low=0.0, high=1.0,
                                      high_inclusive=False)
    test_split = v.check_number("test_split", test_split, low=0.0, high=1.0,
                                high_inclusive=False)
    if validation_split + test_split >= 1.0:
        v.fail("Expected `validation_split + test_split` below 1, so that some examples are "
               "left to train on.", "validation_split + test_split",
               validation_split + test_split)
    seed = v.check_int("seed", seed, low=0)
    v.check_choice("color_mode", color_mode, COLOR_MODES)
    skip_bad_images = v.check_bool("skip_bad_images", skip_bad_images)
    skipped = []

    if isinstance(name_or_path, Dataset):
        given = {"image_size": image_size, "num_samples": num_samples, "color_mode": color_mode,
                 "validation_data": validation_data, "class_names": class_names}
        for key, value in given.items():
            if value is not None:
                v.fail(f"Expected no `{key}` with a cnnzoo.data.Dataset: its splits are "
                       f"fixed (pass its arrays as `(x, y)` to have them split).", key, value)
        return name_or_path
    origin = None
    if class_names is not None:
        if not _in_memory(name_or_path):
            v.fail("Expected `class_names` only with data given in memory ((x, y) arrays or "
                   "a pipeline); a named dataset, a folder (its sub-folders) or a .npz file "
                   "(its class_names array) names its classes itself.", "class_names",
                   class_names)
        if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__"):
            v.fail("Expected `class_names` to be a list of names, one per class.",
                   "class_names", class_names)
    if isinstance(name_or_path, str) and name_or_path in NAMES:
        name = name_or_path
        if name == "digits":
            x, y, class_names = _digits()
            source = "scikit-learn's bundled handwritten digits (sklearn.datasets.load_digits)"
        else:
            n = SHAPES_SAMPLES if num_samples is None else num_samples
            x, y = make_shapes(n, image_size=size or SHAPES_SIZE, seed=seed)
            class_names = list(SHAPE_CLASSES)
            size = None  # drawn at that size already
            source = "synthetic circles, squares and triangles drawn with numpy"
    elif _in_memory(name_or_path):
        x, y, origin = _read_in_memory(name_or_path, "name_or_path")
        x, y, class_names = _check_arrays(x, y, class_names, "")
        name = origin["form"]
        source = f"{origin['form']} given in memory"
    else:
        path = _check_path(name_or_path)
        name = os.path.basename(path.rstrip(os.sep)) or path
        if os.path.isdir(path):
            x, y, class_names, skipped = _read_folder(path, size, color_mode,
                                                      skip_bad_images)
            size = None  # resized while reading
        else:
            x, y, class_names = _read_npz(path)
        source = path
    if color_mode is not None:
        x = _convert_array(x, color_mode)
    if len(class_names) < 2:
        v.fail(f"Expected at least 2 classes to classify; {name} has {len(class_names)}.",
               "num_classes", len(class_names))
    if size is not None and tuple(x.shape[1:3]) != size:
        x = resize_images(x, size)
    if validation_data is not None:
        x_val, y_val, given = _read_in_memory(validation_data, "validation_data")
        x_val, y_val, _ = _check_arrays(x_val, y_val, class_names, " of `validation_data`")
        if color_mode is not None:
            x_val = _convert_array(x_val, color_mode)
        if size is not None and tuple(x_val.shape[1:3]) != size:
            x_val = resize_images(x_val, size)
        if x_val.shape[1:] != x.shape[1:]:
            v.fail(f"Expected `validation_data` images of the training images' shape "
                   f"{x.shape[1:]} (after image_size and color_mode).", "validation_data",
                   validation_data)
        origin = {**(origin or {}), "validation_data": given}
        validation_split = 0.0  # as `model.fit`: validation_data overrides it

    rng = np.random.default_rng(seed)
    if num_samples is not None and not (isinstance(name_or_path, str) and name_or_path == "shapes"):
        if num_samples > len(y):
            v.fail(f"Expected `num_samples` at most the {len(y)} examples of {name}.",
                   "num_samples", num_samples)
        keep, _ = _stratified_split(y, len(y) - num_samples, rng)
        x, y = x[keep], y[keep]
    asked = (validation_split > 0) + (test_split > 0)  # each asked-for split gets one
    train, rest = _stratified_split(
        y, max(_count(len(y), validation_split + test_split), asked), rng)
    n_test = _count(len(y), test_split) if test_split else 0
    n_test = min(n_test, len(rest) - (validation_split > 0))
    val_pos, test_pos = _stratified_split(y[rest], n_test, rng, keep_one=False)
    val, test = rest[val_pos], rest[test_pos]
    if len(train) == 0:
        v.fail(f"Expected enough examples to train on after the validation and test splits; "
               f"{name} has {len(y)}.", "num_samples", len(y))
    if validation_data is not None:
        val_x, val_y = x_val, y_val
    else:
        val_x, val_y = x[val], y[val]
    return Dataset(
        x_train=x[train], y_train=y[train],
        x_val=val_x, y_val=val_y,
        x_test=x[test], y_test=y[test],
        class_names=list(class_names), name=name, source=source, skipped=skipped,
        origin=origin,
    )


# -- sources ---------------------------------------------------------------


def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0-16 grey levels -> raw 0-255 pixels, like any other image.
    x = (bunch.images.astype(np.float32) * (255.0 / 16.0))[..., None]
    y = bunch.target.astype(np.int32)
    return x, y, [str(t) for t in bunch.target_names]


def make_shapes(num_samples=SHAPES_SAMPLES, *, image_size=SHAPES_SIZE, seed=0):
    """Draws grey circles, squares and triangles on noisy backgrounds.

    Each image holds one shape of random size, position, rotation and
    brightness, on a darker background with Gaussian noise. Classes are
    balanced (labels cycle 0, 1, 2 before the seeded shuffle).

    Args:
        num_samples: number of images.
        image_size: one int or `(height, width)`; at least 8.
        seed: seeds everything.

    Returns:
        `(x, y)`: float32 images `(N, H, W, 1)` in [0, 255] and int32 labels
        (0 circle, 1 square, 2 triangle).
    """
    num_samples = v.check_int("num_samples", num_samples, low=1)
    h, w = _check_image_size(image_size)
    if min(h, w) < 8:
        v.fail("Expected `image_size` of at least 8 for the shapes dataset.", "image_size",
               image_size)
    rng = np.random.default_rng([seed, 7])
    y = rng.permutation(np.arange(num_samples) % len(SHAPE_CLASSES)).astype(np.int32)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    x = np.empty((num_samples, h, w, 1), np.float32)
    side = min(h, w)
    for i, label in enumerate(y):
        radius = rng.uniform(0.2, 0.4) * side
        cy = rng.uniform(radius, h - radius)
        cx = rng.uniform(radius, w - radius)
        if label == 0:
            mask = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2
        else:
            mask = _regular_polygon(rows, cols, cy, cx, radius, 4 if label == 1 else 3,
                                    rng.uniform(0, 2 * np.pi))
        background = rng.uniform(0, 80)
        foreground = rng.uniform(150, 255)
        image = np.where(mask, foreground, background) + rng.normal(0, 12, (h, w))
        x[i, ..., 0] = np.clip(image, 0, 255)
    return x, y


def _regular_polygon(rows, cols, cy, cx, radius, sides, angle):
    # Inside a convex polygon = on the inner side of every edge.
    t = angle + 2 * np.pi * np.arange(sides) / sides
    py, px = cy + radius * np.sin(t), cx + radius * np.cos(t)
    inside = np.ones(rows.shape, bool)
    for k in range(sides):
        y0, x0, y1, x1 = py[k], px[k], py[(k + 1) % sides], px[(k + 1) % sides]
        cross = (x1 - x0) * (rows - y0) - (y1 - y0) * (cols - x0)
        inside &= cross >= 0
    return inside


def _check_path(name_or_path):
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path:
        v.fail(f"Expected a dataset name (one of {list(NAMES)}), a .npz file, a folder of "
               f"images, (x, y) arrays, a tf.data.Dataset, a keras.utils.PyDataset or a "
               f"cnnzoo.data.Dataset.", "name_or_path", name_or_path)
    path = os.path.abspath(os.path.expanduser(name_or_path))
    if os.path.exists(path):
        if os.path.isdir(path) or path.lower().endswith(".npz"):
            return path
        v.fail(f"Expected a .npz file or a folder with one sub-folder of images per class; "
               f"{path} is neither.", "name_or_path", name_or_path)
    looks_like_path = os.sep in name_or_path or "." in name_or_path
    if looks_like_path:
        v.fail(f"The dataset path does not exist: {path}.", "name_or_path", name_or_path)
    close = difflib.get_close_matches(name_or_path, NAMES, n=2)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    v.fail(f"Unknown dataset: expected one of {list(NAMES)}, a .npz file or a folder of "
           f"images.{hint}", "name_or_path", name_or_path)


def _read_npz(path):
    if not v.starts_as_zip(path):
        v.fail(f"Could not read {path}: not a valid .npz file (`numpy.savez` writes a zip "
               f"archive; this file is not one).", "path", path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            keys = list(arrays.files)
            # Read everything now: a corrupt member fails here, inside the try.
            loaded = {k: arrays[k] for k in ("x", "y", "class_names") if k in keys}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as error:
        detail = " ".join(str(error).split()).rstrip(".") or type(error).__name__
        v.fail(f"Could not read {path}: not a valid .npz file (corrupt or truncated?): "
               f"{detail}.", "path", path)
    if "x" not in loaded or "y" not in loaded:
        v.fail(f"Expected {path} to hold arrays `x` and `y` (and optionally `class_names`); "
               f"it holds {keys}.", "path", path)
    return _check_arrays(loaded["x"], loaded["y"], loaded.get("class_names"), f" in {path}",
                         source=("path", path))


def _check_arrays(x, y, class_names, where, source=None):
    """Checked `(x, y, class_names)`: float32 `(N, H, W, C)` pixels in [0, 255], int32 labels.

    The rules of a `.npz` file's arrays, for any arrays: `where` says whose
    they are in messages (`" in PATH"`, or `""`); `source`, the
    `(name, value)` that messages about the values end with (default: the
    array). With `class_names`, labels must be among them; without, they are
    `0..K-1`, each with examples.
    """

    if x.dtype.kind not in "uif" or x.ndim not in (3, 4):
        v.fail(f"Expected `x`{where} to be numeric pixels of shape (N, H, W) or (N, H, W, C).",
               "x", x)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[3] > 4 and x.shape[1] in (1, 3, 4):
        v.fail(f"Expected `x`{where} channels-last, (N, H, W, C); it looks channels-first "
               f"(`numpy.moveaxis(x, 1, -1)` turns it around).", "x.shape", x.shape)
    if min(x.shape) < 1:
        v.fail(f"Expected `x`{where} to hold at least one non-empty image.", "x.shape", x.shape)
    x = _pixel_range(x.astype(np.float32), f"`x`{where}", *(source or ("x", x)),
                     stored_float=x.dtype.kind == "f")

    if y.ndim != 1 or y.dtype.kind not in "uif":
        v.fail(f"Expected `y`{where} to be a 1-D array of integer labels"
               + (" (one-hot labels: numpy.argmax(y, axis=-1))" if y.ndim == 2 else "") + ".",
               "y", y)
    if len(y) != len(x):
        v.fail(f"Expected `x` and `y`{where} to have the same length; x has {len(x)} images "
               f"and y {len(y)} labels.", "len(y)", len(y))
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        v.fail(f"Expected whole-number labels in `y`{where}.", *(source or ("y", y)))
    y = y.astype(np.int64)
    if class_names is not None:
        class_names = [c.decode() if isinstance(c, bytes) else str(c)
                       for c in np.asarray(class_names).reshape(-1)]
        if len(set(class_names)) != len(class_names) or not class_names:
            v.fail(f"Expected distinct `class_names`{where}.", "class_names", class_names)
        num_classes = len(class_names)
    else:
        num_classes = int(y.max()) + 1 if len(y) else 0
        class_names = [str(i) for i in range(num_classes)]
        missing = sorted(set(range(num_classes)) - set(y.tolist()))
        if missing and int(y.min()) >= 0:
            # Labels 1..K would make a class "0" that no example shows.
            v.fail(f"Expected labels 0..{num_classes - 1} in `y`{where}, each with examples "
                   f"(or `class_names` naming every class); label {missing[0]} has none.",
                   "y", f"labels {sorted(set(y.tolist()))[:10]}")
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        v.fail(f"Expected labels in [0, {num_classes - 1}] in `y`{where} ({num_classes} "
               f"classes); label {int(y[i])} at index {i} is outside.", "y", int(y[i]))
    return x, y.astype(np.int32), class_names


# -- data in memory ------------------------------------------------------------


def _in_memory(data):
    """Whether `data` is `(x, y)` arrays or a pipeline (not a name, a path or a Dataset)."""
    return isinstance(data, (tuple, list)) or _pipeline_kind(data) is not None


def _pipeline_kind(data):
    """`"tf.data.Dataset"`, `"PyDataset"` or `None`, without importing TensorFlow or Keras."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        return "tf.data.Dataset"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(data, keras.utils.PyDataset):
        return "PyDataset"
    return None


def _read_in_memory(data, name):
    """`(x, y, record)` of `(x, y)` arrays or a pipeline; `record` is what a run records of it."""
    kind = _pipeline_kind(data)
    if kind is None:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            v.fail(f"Expected `{name}` as (x, y): images and integer labels.", name, data)
        x, y = (np.asarray(a) if not hasattr(a, "dtype") else a for a in data)
        record = {"form": "arrays", "x": v.describe(x), "y": v.describe(y)}
        x, y = np.asarray(x), np.asarray(y)
    else:
        x, y = _read_pipeline(data, kind, name)
        record = {"form": kind, "x": v.describe(x), "y": v.describe(y),
                  "read": f"read once into memory: {len(y)} examples"}
    if x.dtype == object or y.dtype == object:
        v.fail(f"Expected `{name}` as numeric arrays (x, y) of the same length.", name, data)
    return x, y, {**record, "sha256": content_hash([x, y])}


def _read_pipeline(data, kind, name):
    """A finite pipeline's `(images, labels)` elements (batched or not), concatenated."""
    if kind == "tf.data.Dataset":
        import tensorflow as tf

        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            v.fail(f"Expected a finite `{name}`: it is read once into memory (it repeats "
                   f"forever; pass it without .repeat()).", name, data)
        elements = data.as_numpy_iterator()
    else:
        try:
            count = len(data)
        except (TypeError, NotImplementedError):
            count = None
        if count is None:
            v.fail(f"Expected a `{name}` PyDataset of known length (`len()` or "
                   f"`num_batches`): it is read once into memory.", name, data)
        elements = (data[i] for i in range(count))
    xs, ys, batched = [], [], None
    for element in elements:
        if not isinstance(element, (tuple, list)) or len(element) != 2:
            what = (f"{len(element)} items" if isinstance(element, (tuple, list))
                    else type(element).__name__)
            v.fail(f"Expected `{name}` to give (images, labels) pairs, without sample "
                   f"weights; an element is {what}.", name, data)
        x, y = (np.asarray(a) for a in element)
        batched = y.ndim >= 1 if batched is None else batched
        xs.append(x if batched else x[None])
        ys.append(y if batched else y[None])
    if not xs:
        v.fail(f"Expected `{name}` to hold examples; it is empty.", name, data)
    try:
        return np.concatenate(xs), np.concatenate(ys)
    except ValueError:
        v.fail(f"Expected every batch of `{name}` to hold images of one shape (resize them "
               f"in the pipeline).", name, data)


def content_hash(arrays, digest=None):
    """A short hex digest of arrays' shapes, dtypes and bytes: same data, same digest.

    Args:
        arrays: the arrays, in order.
        digest: a `hashlib` object holding what else the digest covers.
            Defaults to a new SHA-256.
    """
    import hashlib

    digest = digest or hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(a.data)
    return digest.hexdigest()[:20]


def origin_text(origin):
    """The progress line's words for data given in memory (a `Dataset`'s `origin`); `None` if none.

    A pipeline read into memory says so: its own shuffling and random
    transformations ran once, not in every epoch.
    """
    parts = []
    for what, given in (("data", origin or {}), ("validation_data", (origin or {}).get(
            "validation_data"))):
        if given and "x" in given:
            text = f"{what} {given['form']}: x {given['x']}, y {given['y']}"
            if "read" in given:
                text += (f", {given['read']} (its own shuffling and random transformations ran "
                         f"once, not in every epoch)")
            parts.append(text)
    return "; ".join(parts) or None


def record(data, dataset):
    """What a run or search records of data given in memory; `None` for a name or a path.

    Args:
        data: what was passed as the data.
        dataset: the `Dataset` `load_dataset` made of it.

    Returns:
        A JSON-ready dict: the form, each array's type, shape and dtype,
        and a content hash (of a `Dataset`'s splits), so that resuming with
        other data is refused; never the arrays. `validation_data` inside
        where one was given.
    """
    if isinstance(data, Dataset):
        return {"form": "Dataset", "sha256": data.fingerprint()}
    return dataset.origin


def read_image(path, *, image_size=None, color_mode=None):
    """Reads one image file into float32 pixels `(H, W, C)` in [0, 255].

    Args:
        path: an image file Pillow can read.
        image_size: resize to one int or `(height, width)` (bilinear).
        color_mode: `None` (keep the file's channels), `"grayscale"` or
            `"rgb"`.

    Raises:
        ValueError: the file is missing, corrupt or truncated.
    """
    from PIL import Image, UnidentifiedImageError

    v.check_choice("color_mode", color_mode, COLOR_MODES)
    size = _check_image_size(image_size)
    path = os.fspath(path)
    if not os.path.isfile(path):
        v.fail(f"The image file does not exist: {path}.", "path", path)
    try:
        with Image.open(path) as image:
            image.load()  # decodes now, so a truncated file fails here
            stored_float = image.mode == "F"
            image, scale = _convert(image, color_mode)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) * np.float32(scale)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        what = ("corrupt or truncated?" if path.lower().endswith(IMAGE_EXTENSIONS)
                else f"not an image file? Images are {', '.join(IMAGE_EXTENSIONS)}")
        v.fail(f"Could not read the image {path} ({what}): {detail}.", "path", path)
    if stored_float:
        pixels = _pixel_range(pixels, f"the float image {path}", "path", path,
                              stored_float=True)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if color_mode == "rgb" and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)  # a 16-bit or float grey image
    return pixels


def _pixel_range(x, where, name, value, *, stored_float):
    """Float32 pixels checked finite and in [0, 255]; stored floats in [0, 1] are scaled up.

    One rule for `.npz` arrays and float images (TIFF): floats whose
    maximum is at most 1 are taken as [0, 1] pixels.
    """
    if not np.all(np.isfinite(x)):
        v.fail(f"Expected finite pixels in {where}; it holds NaN or inf.", name, value)
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        v.fail(f"Expected raw pixels in [0, 255] (or [0, 1]) in {where}; they span "
               f"[{low:g}, {high:g}].", name, value)
    return x * np.float32(255.0) if stored_float and high <= 1.0 else x


def _convert(image, color_mode):
    """Returns `(image, scale)`: a mode numpy reads as pixels, and the factor to 0-255.

    16-bit and float grey images stay one float channel (`read_image` makes
    them RGB where asked): PIL's conversions of them clip at 255.
    """
    if image.mode == "I" or image.mode.startswith("I;16"):
        return image.convert("F"), 1.0 / 257.0  # 16-bit grey: 0-65535 -> 0-255
    if image.mode == "F":
        return image, 1.0
    if color_mode == "grayscale":
        return image.convert("L"), 1.0
    if color_mode == "rgb":
        return image.convert("RGB"), 1.0
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image, 1.0
    if image.mode == "1":
        return image.convert("L"), 1.0
    if image.mode == "PA" or "transparency" in image.info:
        return image.convert("RGBA"), 1.0
    return image.convert("RGB"), 1.0  # palette, CMYK, YCbCr, ...


def _convert_array(x, color_mode):
    """Images `(N, H, W, C)` with 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA) channels."""
    channels = x.shape[-1]
    if color_mode == "rgb":
        if channels in (1, 2):
            return np.repeat(x[..., :1], 3, axis=-1)
        return x[..., :3]
    if channels in (1, 2):
        return x[..., :1]
    luma = np.asarray([0.299, 0.587, 0.114], x.dtype)  # PIL's "L" conversion
    return (x[..., :3] @ luma)[..., None]


def list_images(folder, recursive=False):
    """Image files inside `folder`, sorted; hidden files and folders skipped.

    With `recursive`, the files of its sub-folders too, as Keras's
    `image_dataset_from_directory` reads a class folder.
    """
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found.extend(os.path.join(root, f) for f in files
                     if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
                     and os.path.isfile(os.path.join(root, f)))
    return sorted(found)


def _read_folder(path, size, color_mode, skip_bad_images=False):
    classes = sorted(d for d in os.listdir(path)
                     if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))
    if not classes:
        loose = list_images(path)
        what = (f"it holds {len(loose)} images but no class sub-folders" if loose
                else "it is empty")
        v.fail(f"Expected the folder {path} to hold one sub-folder of images per class; "
               f"{what}.", "path", path)
    images, labels, first, bad = [], [], {}, []
    for label, cls in enumerate(classes):
        files = list_images(os.path.join(path, cls), recursive=True)
        if not files:
            v.fail(f"Expected image files ({', '.join(IMAGE_EXTENSIONS)}) in every class "
                   f"folder; {os.path.join(path, cls)} has none.", "path",
                   os.path.join(path, cls))
        for file in files:
            try:
                pixels = read_image(file, image_size=size, color_mode=color_mode)
            except ValueError as error:
                if not skip_bad_images:
                    raise
                # "Could not read the image P (what): detail. Received: ..." -> "what: detail"
                why = str(error).rsplit(" Received:", 1)[0].replace(
                    f"Could not read the image {file} (", "", 1).replace("): ", ": ", 1)
                bad.append((file, why.replace(f" '{file}'", "").replace(file, "").rstrip(".")))
                continue
            if not first:
                first = {"file": file, "shape": pixels.shape}
            elif pixels.shape[2] != first["shape"][2]:
                v.fail(f"Expected every image to have {first['shape'][2]} channel(s) like "
                       f"{first['file']}; {file} has {pixels.shape[2]}. Pass color_mode="
                       f"'grayscale' or 'rgb' (--color-mode) to convert them all.", "path", file)
            elif pixels.shape[:2] != first["shape"][:2]:
                v.fail(f"Expected every image to be {first['shape'][0]}x{first['shape'][1]} "
                       f"like {first['file']}; {file} is {pixels.shape[0]}x{pixels.shape[1]}. "
                       f"Pass image_size (--image-size) to resize them all.", "path", file)
            images.append(pixels)
            labels.append(label)
    if bad:
        listed = "; ".join(f"{os.path.relpath(file, path)} ({why})" for file, why in bad)
        print(f"Skipped {len(bad)} unreadable image file(s) of {path}: {listed}.",
              file=sys.stderr)
        empty = [cls for label, cls in enumerate(classes) if label not in set(labels)]
        if empty:
            v.fail(f"Expected a readable image in every class folder; every image of "
                   f"{', '.join(empty)} is unreadable.", "path", os.path.join(path, empty[0]))
    return np.stack(images), np.asarray(labels, np.int32), classes, [file for file, _ in bad]


# -- helpers -----------------------------------------------------------------


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (list, tuple)):
        if len(image_size) != 2:
            v.fail("Expected `image_size` as one int or (height, width).", "image_size",
                   image_size)
        return tuple(v.check_int("image_size", s, low=1) for s in image_size)
    n = v.check_int("image_size", image_size, low=1)
    return (n, n)


def resize_images(x, size):
    """Resizes a batch `(N, H, W, C)` of float pixels to `size` (bilinear)."""
    from PIL import Image

    h, w = size
    out = np.empty((x.shape[0], h, w, x.shape[3]), np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[3]):
            channel = Image.fromarray(np.ascontiguousarray(x[i, :, :, c], np.float32), mode="F")
            out[i, :, :, c] = np.asarray(channel.resize((w, h), Image.BILINEAR))
    return np.clip(out, 0.0, 255.0)


def _count(n, fraction):
    # At least one example for a split that was asked for.
    if fraction <= 0:
        return 0
    return max(1, int(round(n * fraction)))


def _stratified_split(y, n_out, rng, keep_one=True):
    """Splits indices into `(kept, taken)`, taking `n_out` stratified by class.

    Each class gives its share of `n_out` (largest remainders round). With
    `keep_one`, each class keeps at least one example where the others can
    give instead. Both parts come out shuffled.
    """
    n = len(y)
    n_out = min(max(int(n_out), 0), n)
    classes, counts = np.unique(y, return_counts=True)
    ideal = counts * (n_out / n) if n else counts * 0.0
    cap = np.maximum(counts - 1, 0) if keep_one else counts
    if cap.sum() < n_out:
        cap = counts
    take = np.minimum(np.floor(ideal).astype(int), cap)
    order = np.argsort(-(ideal - take), kind="stable")
    left = n_out - int(take.sum())
    while left > 0:  # cap.sum() >= n_out: each pass takes at least one
        for k in order:
            if left and take[k] < cap[k]:
                take[k] += 1
                left -= 1
    kept, taken = [], []
    for cls, k in zip(classes, take):
        idx = rng.permutation(np.flatnonzero(y == cls))
        taken.append(idx[:k])
        kept.append(idx[k:])
    kept = np.concatenate(kept) if kept else np.zeros(0, int)
    taken = np.concatenate(taken) if taken else np.zeros(0, int)
    return rng.permutation(kept), rng.permutation(taken)
