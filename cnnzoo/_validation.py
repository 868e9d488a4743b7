"""Argument checks shared by every public entry point.

Every check raises `ValueError` with a message that says what was expected
and ends with `Received: name=value`, the Keras convention. None of this
module imports Keras, so the command line can validate before the heavy
import.
"""

import difflib
import math
import numbers
import os


# The longest value a message quotes; past it, the start and a count.
MAX_RECEIVED_CHARS = 120


def describe(value):
    """A short stand-in for a value in a message: arrays by type, shape and dtype.

    An array, a tensor or a data set (anything with `shape` and `dtype`) is
    named, never printed (one message held 22,086 characters of digits), as
    `ndarray(shape=(100, 8, 8, 1), dtype=uint8)`, wherever it is in a tuple,
    list or dict (`(x, y)` arrays; past four items, a count); a
    `tf.data.Dataset` by its element spec, described so; other reprs
    longer than `MAX_RECEIVED_CHARS` (eight times that for strings and
    paths) are cut, saying how long.
    """
    if _is_array(value):
        shape = value.shape
        try:
            shape = tuple(None if d is None else int(d) for d in shape)
        except TypeError:
            pass
        dtype = value.dtype
        return f"{type(value).__name__}(shape={shape}, dtype={getattr(dtype, 'name', dtype)})"
    if hasattr(value, "element_spec") and not isinstance(value, type):  # a tf.data.Dataset
        return f"{type(value).__name__}(element_spec={describe(value.element_spec)})"
    if _holds_array(value):
        items = list(value.items()) if isinstance(value, dict) else list(value)
        parts = [f"{item[0]!r}: {describe(item[1])}" if isinstance(value, dict)
                 else describe(item) for item in items[:4]]
        if len(items) > 4:
            parts.append(f"... ({len(items)} items)")
        inner = ", ".join(parts)
        if isinstance(value, dict):
            return f"{{{inner}}}"
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' * (len(items) == 1)})"
    text = repr(value)
    limit = MAX_RECEIVED_CHARS * (8 if isinstance(value, (str, bytes, os.PathLike)) else 1)
    if len(text) > limit:  # a path may be long; a list of numbers is data
        text = f"{text[:limit - 20]}... ({len(text):,} characters)"
    return text


def _is_array(value):
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    return shape is not None and dtype is not None and shape != ()


def _holds_array(value, depth=2):
    """Whether a tuple, list or dict holds an array (in its items, or theirs)."""
    if depth == 0 or not isinstance(value, (tuple, list, dict)):
        return False
    items = value.values() if isinstance(value, dict) else value
    return any(_is_array(item) or _holds_array(item, depth - 1) for item in items)


def differences(old, new, keys=None, prefix=""):
    """Where two settings dicts differ: `["epochs: 5 -> 10", "data.sha256: 'ab' -> 'cd'"]`.

    Args:
        old, new: the dicts.
        keys: the keys compared. Defaults to every key of either.
        prefix: put before each key (nested dicts are compared key by key,
            as `outer.inner`).

    Returns:
        One `"key: old -> new"` per difference, values shortened as in
        messages (`describe`).
    """
    keys = sorted(set(old) | set(new)) if keys is None else keys
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, prefix=f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {describe(a)} -> {describe(b)}")
    return out


def _received(name, value):
    return f"Received: {name}={describe(value)}"


def fail(expected, name, value):
    """Raises the project's standard `ValueError`."""
    raise ValueError(f"{expected} {_received(name, value)}")


def check_number(name, value, *, low=None, high=None, low_inclusive=True,
                 high_inclusive=True, allow_none=False, allow_inf=False):
    """Checks a real number (not a bool, not NaN, finite unless `allow_inf`) inside bounds."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(f"Expected `{name}` to be a number.", name, value)
    value = float(value)
    if math.isnan(value):
        fail(f"Expected `{name}` to be a number, not NaN.", name, value)
    if math.isinf(value) and not allow_inf:
        fail(f"Expected `{name}` to be a finite number.", name, value)
    too_low = low is not None and (value < low or (value == low and not low_inclusive))
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if too_low or too_high:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        interval = ("[" if low_inclusive else "(") + f"{lo}, {hi}" + ("]" if high_inclusive else ")")
        fail(f"Expected `{name}` in {interval}.", name, value)
    return value


def check_rate(name, value):
    """Checks a dropout-like rate in [0, 1)."""
    return check_number(name, value, low=0.0, high=1.0, high_inclusive=False)


def check_int(name, value, *, low=None, high=None, allow_none=False):
    """Checks an integer (not a bool, not a float) inside optional bounds."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(f"Expected `{name}` to be an integer.", name, value)
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        fail(f"Expected `{name}` to be an integer in [{lo}, {hi}].", name, value)
    return value


def check_choice(name, value, choices):
    """Checks that `value` is one of `choices`, suggesting close matches."""
    choices = list(choices)
    if isinstance(value, str) and value in choices:
        return value
    if value in choices and not isinstance(value, (bool, float)):
        return value
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(c) for c in choices], n=3)
        if close:
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?"
    fail(f"Expected `{name}` to be one of {choices}.{hint}", name, value)


def check_data_format(value):
    """`"channels_last"` or `"channels_first"`, any case; `None` is Keras's default."""
    if value is None:
        import keras

        return keras.config.image_data_format()
    choices = ("channels_last", "channels_first")
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()  # as Keras's standardize_data_format
    return check_choice("data_format", value, choices)


def check_bool(name, value):
    if not isinstance(value, bool):
        fail(f"Expected `{name}` to be True or False.", name, value)
    return value


def check_input_shape(name, value, *, min_size=None, model=None):
    """Checks an `(height, width, channels)` image shape.

    Returns the shape as a tuple of ints. `min_size` is the smallest height
    and width the model accepts; the message names it and the model.
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        fail(f"Expected `{name}` to be a tuple (height, width, channels).", name, value)
    out = []
    for dim in value:
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            fail(f"Expected `{name}` to hold three positive integers (height, width, channels).",
                 name, value)
        out.append(int(dim))
    if min_size is not None and (out[0] < min_size or out[1] < min_size):
        who = f"`{model}`" if model else "this model"
        fail(f"Expected an input of at least {min_size}x{min_size} for {who} "
             f"(its minimum, from the architecture's total stride).", name, value)
    return tuple(out)


def check_per_stage(name, value, num_stages, check=check_rate):
    """Expands one value, or one value per stage, to a per-stage list."""
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1:
        value = value.tolist()  # a NumPy array of rates
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            fail(f"Expected `{name}` to be one value or a list of {num_stages} values "
                 f"(one per stage).", name, value)
        return [check(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [check(name, value)] * num_stages


def check_list(name, value, check, parse=float, what="values"):
    """Checks a non-empty list, or a comma-separated string, item by item.

    Args:
        name: the argument's name, for messages.
        value: a list/tuple, or a string such as `"0,0.25,0.5"`.
        check: `check(name, item)` for each item, e.g. `check_rate`.
        parse: converts each part of a string (`float`, `int`).
        what: what the items are, in words.
    """
    if isinstance(value, str):
        try:
            value = [parse(part) for part in value.split(",") if part.strip()]
        except ValueError:
            fail(f"Expected comma-separated {what}.", name, value)
    if not isinstance(value, (list, tuple)) or not value:
        fail(f"Expected a list of {what}.", name, value)
    return [check(name, item) for item in value]


def check_output_file(name, value):
    """Checks a path that a file can be written to, before any work is done.

    The path must not be a folder, and the nearest part of it that exists
    must be a folder one can write in (the others are created when the file
    is written). Nothing is created. Returns the path as a string.
    """
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        fail(f"Expected `{name}` to be a file path.", name, value)
    path = os.fspath(value)
    if os.path.isdir(path) or not os.path.basename(path):
        fail(f"Expected `{name}` to be a file path, not a folder.", name, value)
    _check_creatable(name, value, os.path.dirname(os.path.abspath(path)), "a file path")
    return path


def check_output_folder(name, value):
    """Checks a path that a folder can be written at, before any work is done.

    The path must be a folder or not exist yet, and the nearest part of it
    that exists must be a folder one can write in. Nothing is created.
    Returns the path as a string.
    """
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        fail(f"Expected `{name}` to be a folder path.", name, value)
    path = os.fspath(value)
    if os.path.exists(path) and not os.path.isdir(path):
        fail(f"Expected `{name}` to be a folder, not a file.", name, value)
    _check_creatable(name, value, os.path.abspath(path), "a folder path")
    return path


def _check_creatable(name, value, folder, what):
    # The nearest existing ancestor of `folder` must be a writable folder.
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        fail(f"Expected `{name}` to be {what} whose folders can be created, but "
             f"{folder!r} is a file.", name, value)
    if not os.access(folder, os.W_OK | os.X_OK):
        fail(f"Expected `{name}` to be {what} in a folder you can write to, but "
             f"{folder!r} is not writable.", name, value)


def module_installed(name):
    """Whether `import name` would find the module (without importing it).

    An import hook that refuses the module (as `benchmarks/gpu.py
    --block-tensorflow` does) counts as not installed.
    """
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def starts_as_zip(path):
    """Whether the file at `path` starts as a zip archive does (whole or truncated).

    `.npz` and `.keras` files are zip archives: a file that does not even
    start as one is the wrong kind of file, not a damaged one.
    """
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"PK"
    except OSError:
        return False
