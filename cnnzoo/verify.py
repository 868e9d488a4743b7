"""Numerical checks of cnnzoo's ReLU and Dropout against `keras.layers`.

`verify()` runs every check and returns a `Report`: a list of `Check`s (name,
statistic, tolerance, passed) that prints as a table and saves as JSON. The
layer classes under test are arguments, so a deliberately wrong layer can be
fed in and the report must catch it (the tests do exactly that).

What is compared, and how strictly:

- ReLU forward: bit for bit against `keras.layers.ReLU` in float16,
  bfloat16, float32 and float64 (float64 only where the backend has it; JAX
  needs `jax_enable_x64`), over random tensors and special values, for every
  combination of `max_value`, `negative_slope` and `threshold` in a grid.
  One exception, stated in each check: an output pair that is zero or
  subnormal on both sides counts as equal whatever its sign or subnormal bits
  ("flush-equivalent"), because TensorFlow's own ReLU kernel returns -0 or +0,
  and flushes subnormals or not, depending on the element's position in a
  SIMD vector, which no elementwise function can reproduce.
- ReLU gradient: bit for bit against Keras's at random points and at every
  kink (each backend has its own conventions there; see
  `cnnzoo.layers.relu`), and against central finite differences in float64
  away from the kinks.
- Dropout: identity at inference (bit for bit); dropped fraction within 4
  binomial standard errors; kept values equal `x / (1 - rate)` correctly
  rounded (bit for bit on TensorFlow and torch; within 1 ulp on JAX, whose
  XLA:CPU vectorized division is not correctly rounded, Keras's included);
  mean preserved within 4 standard errors; rate 0 is the identity;
  `noise_shape` broadcasts; gradient equals `mask / (1 - rate)`; seeds
  reproduce and differ; the mask equals Keras's for the same seed
  (bit-identical on TensorFlow, JAX and torch, measured:
  `MASKS_BIT_IDENTICAL`), and the kept values equal Keras's (bit for bit on
  JAX; within 1 ulp on TensorFlow, whose dropout multiplies by a rounded
  `1 / (1 - rate)` instead of dividing, and on torch in float16 and
  bfloat16, where Keras divides by `1 - rate` rounded to float32).
- SpatialDropout2D: whole feature maps only, in both data formats.
- Models: every zoo model built on the cnnzoo layers and on `keras.layers`,
  with the same weights, gives the same inference outputs (tolerance 0: the
  layers are bit-exact and nothing else differs) and the same training loss
  with dropout off, before and after one SGD step (relative tolerance
  `MODEL_LOSS_RTOL`: the step goes through each backend's fused kernels, and
  the ReLU gradients are the only thing that differs between the two).
"""

import dataclasses
import json
import math
import time

import numpy as np

from cnnzoo import _atomic
from cnnzoo import _validation as v
from cnnzoo import runtime

# Measured on Keras 3 with TensorFlow 2.21, JAX 0.10 and PyTorch 2.13: for
# the same seed, cnnzoo's dropout masks are bit for bit Keras's (the noise is
# drawn as each backend's Keras dropout draws it). `check_dropout` tests it.
MASKS_BIT_IDENTICAL = {"tensorflow": True, "jax": True, "torch": True}

# Kept values against Keras's, in units in the last place: JAX's Keras
# dropout divides by 1 - rate (as cnnzoo does); TensorFlow's multiplies by
# 1 / (1 - rate) rounded to the dtype, 1 ulp away at most; torch's divides by
# 1 - rate rounded to float32, not to the dtype (1 ulp in float16 and
# bfloat16, measured; 0 in float32 and float64).
KEPT_VALUE_ULPS = {"tensorflow": 1, "jax": 0, "torch": 1}
KEPT_VALUE_WHY = {
    "tensorflow": "Keras multiplies by a rounded 1/(1-rate)",
    "torch": "Keras divides float16 and bfloat16 by 1-rate rounded to float32",
}

# Training loss after one SGD step, primitive vs keras model, relative.
# Measured on CPU (TensorFlow, all 18 models; JAX, the quick pair): 0. The
# tolerance leaves room for the one thing that differs between the two
# graphs: the backend may fuse conv + bias + ReLU into one kernel for
# keras.layers.ReLU and not for the primitive one.
MODEL_LOSS_RTOL = 1e-5

# Inference outputs (softmax probabilities): bit-exact on CPU (measured, all
# models). On an accelerator a fused conv + ReLU kernel may round differently
# (not measured), so there a few float32 ulps of a probability are allowed.
MODEL_OUTPUT_ATOL = {"cpu": 0.0, "accelerator": 1e-6}

# Kept values against x / (1 - rate) correctly rounded, in ulps: exact on
# TensorFlow and torch; XLA:CPU's vectorized float division (JAX) is not
# correctly rounded (measured: about 1 element in 10 is 1 ulp off), whoever
# divides.
DIVISION_ULPS = {"tensorflow": 0, "jax": 1, "torch": 0}

Z_TOLERANCE = 4.0  # binomial / mean checks: 4 standard errors

RELU_GRID = [
    {"max_value": m, "negative_slope": s, "threshold": t}
    for m in (None, 6.0, 1.5)
    for s in (0.0, 0.2)
    for t in (0.0, 0.5)
]

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclasses.dataclass
class Check:
    """One line of the report.

    Attributes:
        name: what was checked, e.g. `"relu/forward/float16"`.
        statistic: the measured number (a mismatch count, a max difference
            or a z-score; `detail` says which).
        tolerance: the largest `statistic` that passes.
        passed: whether it passed.
        detail: what the statistic is, and anything worth knowing.
    """

    name: str
    statistic: float
    tolerance: float
    passed: bool
    detail: str = ""

    def to_dict(self):
        stat = self.statistic
        stat = None if stat is None or (isinstance(stat, float) and math.isnan(stat)) else stat
        return {"name": self.name, "statistic": stat, "tolerance": self.tolerance,
                "passed": bool(self.passed), "detail": self.detail}


def _check(name, statistic, tolerance, detail=""):
    statistic = float(statistic)
    passed = (not math.isnan(statistic)) and statistic <= tolerance
    return Check(name, statistic, float(tolerance), bool(passed), detail)


@dataclasses.dataclass
class Report:
    """The result of `verify()`.

    Attributes:
        checks: the `Check`s, in the order they ran.
        backend: the Keras backend.
        keras_version: `keras.__version__`.
        notes: statements that hold for the whole run (mask identity,
            tolerances and why).
        seconds: wall time.
    """

    checks: list
    backend: str = ""
    keras_version: str = ""
    notes: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self):
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def failures(self):
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    def find(self, prefix):
        """The checks whose name starts with `prefix`."""
        return [c for c in self.checks if c.name.startswith(prefix)]

    def to_dict(self):
        return {
            "passed": self.passed,
            "backend": self.backend,
            "keras_version": self.keras_version,
            "seconds": round(self.seconds, 2),
            "num_checks": len(self.checks),
            "num_failed": len(self.failures()),
            "notes": list(self.notes),
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self, path=None):
        """Returns the report as JSON; also writes it (atomically) to `path`."""
        if path is not None:
            path = v.check_output_file("path", path)
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            _atomic.write_text(path, text + "\n")
        return text

    def format_table(self, details=True):
        """The report as a plain-text table, one row per check."""
        rows = [("check", "statistic", "tolerance", "result")]
        for c in self.checks:
            rows.append((c.name, _fmt(c.statistic), _fmt(c.tolerance),
                         "pass" if c.passed else "FAIL"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        failed = self.failures()
        if details and failed:
            lines.append("")
            lines.append("Failures:")
            for c in failed:
                lines.append(f"  {c.name}: {c.detail}")
        lines.append("")
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append(f"{len(self.checks) - len(failed)}/{len(self.checks)} checks passed "
                     f"on {self.backend} (Keras {self.keras_version}) in {self.seconds:.1f} s: "
                     + ("PASS" if self.passed else "FAIL"))
        return "\n".join(lines)

    def __str__(self):
        return self.format_table()


def _fmt(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if float(x).is_integer() and abs(x) < 1e12:
        return str(int(x))
    return f"{x:.3g}"


# -- helpers -------------------------------------------------------------------


def _backend():
    import keras

    return keras.backend.backend()


def _np_dtype(dtype):
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def _finfo(dtype):
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.finfo(ml_dtypes.bfloat16)
    return np.finfo(np.dtype(dtype))


def available_dtypes():
    """The float dtypes the current backend computes in."""
    if _backend() == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):
            return FLOAT_DTYPES[:3]
    return FLOAT_DTYPES


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def _to_numpy(x):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def special_values(dtype):
    """Signed zeros, infinities, NaN, subnormals, the extremes, and ordinary values."""
    fi = _finfo(dtype)
    tiny = float(fi.tiny)
    sub = float(fi.smallest_subnormal)
    big = float(fi.max)
    vals = [0.0, -0.0, math.inf, -math.inf, math.nan, sub, -sub, tiny - sub, -(tiny - sub),
            tiny, -tiny, big, -big, 1.0, -1.0, 0.5, -0.5, 6.0, 1.5, 0.2, -0.2, 7.0, 3.0, -3.0]
    return np.array(vals, dtype=np.float64).astype(_np_dtype(dtype))


def relu_definition(x, max_value=None, negative_slope=0.0, threshold=0.0):
    """`keras.layers.ReLU`'s documented function, in NumPy, exact on the special values.

    `max_value` at and above it, `x` between `threshold` and `max_value`,
    `negative_slope * (x - threshold)` at and below the threshold, where a
    slope of 0 gives 0 (also at -inf: the limit, not `0 * -inf`).

    NaN, of which the definition's cases do not speak, follows Keras 3.15:
    NaN is not above a threshold, so a threshold without a slope selects 0
    there (`where(x > threshold, x, 0)`); elsewhere NaN stays NaN (the
    ReLU kernels propagate it). Returned in `x`'s dtype.
    """
    x = np.asarray(x)
    w = x.astype(np.float64)
    below = np.zeros_like(w) if not negative_slope else negative_slope * (w - threshold)
    out = np.where(w > threshold, w, below)
    if max_value is not None:
        out = np.where(w >= max_value, max_value, out)
    nan_selects_zero = threshold != 0.0 and not negative_slope
    return (out if nan_selects_zero else np.where(np.isnan(w), w, out)).astype(x.dtype)


def _definition_points(x):
    """Where `verify` takes the definition, not Keras, as the truth: +-inf, +-0 and NaN.

    Keras before 3.15 gives NaN at -inf and at NaN with a threshold (it
    computed `x * cast(x > threshold)`); from 3.15 it agrees with
    `relu_definition` on all of them.
    """
    w = np.asarray(x).astype(np.float64)
    return np.isinf(w) | (w == 0) | np.isnan(w)


def relu_reference(x, keras_out, max_value=None, negative_slope=0.0, threshold=0.0):
    """What cnnzoo's ReLU must give on `x`: the definition at its points, Keras elsewhere.

    At +-inf, +-0 and NaN `relu_definition` (where Keras before 3.15 was
    wrong), everywhere else `keras_out`, what `keras.layers.ReLU` gave.

    Args:
        x: the NumPy input.
        keras_out: `keras.layers.ReLU(...)(x)` as a NumPy array.
        max_value, negative_slope, threshold: the layer's arguments.

    Returns:
        A NumPy array in `keras_out`'s dtype.
    """
    truth = relu_definition(x, max_value=max_value, negative_slope=negative_slope,
                            threshold=threshold)
    return np.where(_definition_points(x), truth.astype(keras_out.dtype), keras_out)


def relu_inputs(dtype, n, seed=0):
    """Random normal values (scale 4) around the kinks, then the special values."""
    rng = np.random.default_rng(seed)
    random = (rng.standard_normal(n) * 4.0).astype(np.float64)
    # Exactly at, and one step either side of, every kink of the grid.
    kinks = []
    for k in (0.0, 0.5, 1.5, 6.0):
        kd = np.array([k], dtype=_np_dtype(dtype))
        kinks += [kd, np.nextafter(kd.astype(np.float64), np.inf).astype(_np_dtype(dtype)),
                  np.nextafter(kd.astype(np.float64), -np.inf).astype(_np_dtype(dtype))]
    return np.concatenate([random.astype(_np_dtype(dtype)), *kinks, special_values(dtype)])


def _ulps(a, b):
    """Max distance in units in the last place between same-signed finite arrays."""
    return int(np.max(np.abs(_bits(a).astype(np.int64) - _bits(b).astype(np.int64))))


def _same_bits(a, b, flush_equivalent=True):
    """Elementwise: identical bits, both NaN, or (optionally) both zero/subnormal."""
    a = np.asarray(a)
    b = np.asarray(b)
    same = _bits(a) == _bits(b)
    both_nan = np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))
    flushed = np.zeros_like(same)
    if flush_equivalent:
        tiny = float(_finfo(a.dtype.name).tiny)
        fa = np.abs(a.astype(np.float64))
        fb = np.abs(b.astype(np.float64))
        flushed = (fa < tiny) & (fb < tiny) & ~same
    return same | both_nan | flushed, flushed


def grad_of_sum(fn, x):
    """d sum(fn(x)) / dx as a numpy array, with the backend's autodiff.

    Autodiff is the one thing Keras 3 has no backend-neutral op for, so this
    dispatches on the backend (verification code, not model code).
    """
    backend = _backend()
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = tf.reduce_sum(tf.cast(fn(t), "float32" if t.dtype.size < 4 else t.dtype))
        return tape.gradient(y, t).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(a):
            out = fn(a)
            return jnp.sum(out.astype(jnp.float32 if out.dtype.itemsize < 4 else out.dtype))

        return np.asarray(jax.grad(total)(jnp.asarray(x)))
    if backend == "torch":
        import torch
        from keras import ops

        t = ops.convert_to_tensor(x).detach().requires_grad_(True)  # on Keras's device
        out = fn(t)
        total = torch.sum(out.to(torch.float32) if out.dtype.itemsize < 4 else out)
        (grad,) = torch.autograd.grad(total, t)
        return _to_numpy(grad)
    v.fail("Expected the tensorflow, jax or torch backend for gradient checks.", "backend",
           backend)


# -- ReLU ----------------------------------------------------------------------


def _relu_name(config):
    parts = []
    if config["max_value"] is not None:
        parts.append(f"max={config['max_value']:g}")
    if config["negative_slope"]:
        parts.append(f"slope={config['negative_slope']:g}")
    if config["threshold"]:
        parts.append(f"thr={config['threshold']:g}")
    return ",".join(parts) or "default"


def _check_layer_class(name, cls):
    import inspect

    import keras

    if not (inspect.isclass(cls) and issubclass(cls, keras.layers.Layer)):
        v.fail(f"Expected `{name}` to be a Keras layer class.", name, cls)


def _check_dtypes(dtypes):
    """The float dtypes to check: `dtypes`, or every one the backend has."""
    if dtypes is None:
        return tuple(available_dtypes())
    if isinstance(dtypes, str) or not isinstance(dtypes, (list, tuple)) or not dtypes:
        v.fail("Expected `dtypes` as a non-empty list of float dtypes, e.g. ['float32'].",
               "dtypes", dtypes)
    for dtype in dtypes:
        v.check_choice("dtypes", dtype, available_dtypes())
    return tuple(dtypes)


def check_relu(relu_class=None, reference_class=None, quick=False, dtypes=None):
    """Checks a ReLU layer class against `keras.layers.ReLU`.

    Args:
        relu_class: the class under test. Defaults to `cnnzoo.layers.ReLU`.
        reference_class: the reference. Defaults to `keras.layers.ReLU`.
        quick: fewer random points.
        dtypes: the float dtypes to compare (default: all the backend has).

    Returns:
        A list of `Check`s.
    """
    import keras
    from keras import ops

    if relu_class is None:
        from cnnzoo.layers import ReLU as relu_class
    if reference_class is None:
        reference_class = keras.layers.ReLU
    _check_layer_class("relu_class", relu_class)
    _check_layer_class("reference_class", reference_class)
    dtypes = _check_dtypes(dtypes)
    n = 512 if quick else 4096
    checks = []

    # Forward, bit for bit, one row per dtype over the whole grid.
    for dtype in dtypes:
        x_np = relu_inputs(dtype, n)
        x = ops.convert_to_tensor(x_np)
        points = _definition_points(x_np)
        mismatches, flushed, bad_configs = 0, 0, []
        wrong, reference_wrong = [], []  # against the definition, at its points
        for config in RELU_GRID:
            want = _to_numpy(reference_class(dtype=dtype, **config)(x))
            got = _to_numpy(relu_class(dtype=dtype, **config)(x))
            if got.dtype != want.dtype or got.shape != want.shape:
                mismatches += x_np.size
                bad_configs.append(f"{_relu_name(config)} (dtype {got.dtype} vs {want.dtype})")
                continue
            truth = relu_definition(x_np, **config)
            for out, found in ((got, wrong), (want, reference_wrong)):
                ok, _ = _same_bits(out, truth)
                for i in np.flatnonzero(points & ~ok):
                    found.append(f"{_relu_name(config)} at x={x_np[i]!r}: {out[i]!r} "
                                 f"(definition {truth[i]!r})")
            # The definition is the truth at its points (Keras before 3.15 gave NaN at
            # -inf and NaN with a threshold), Keras's layer everywhere else.
            want = relu_reference(x_np, want, **config)
            ok, fl = _same_bits(got, want)
            flushed += int(fl.sum())
            if not ok.all():
                mismatches += int((~ok).sum())
                i = int(np.flatnonzero(~ok)[0])
                bad_configs.append(f"{_relu_name(config)} (x={x_np[i]!r}: got {got[i]!r}, "
                                   f"keras {want[i]!r})")
        detail = (f"elements whose bits differ from keras.layers.ReLU over {len(RELU_GRID)} "
                  f"configurations x {x_np.size} inputs (random, kinks, +-0, +-inf, NaN, "
                  f"subnormals, +-max); {flushed} flush-equivalent pairs (zero or subnormal on "
                  f"both sides) counted as equal")
        if bad_configs:
            detail += "; differs for " + "; ".join(bad_configs[:4])
        checks.append(_check(f"relu/forward/{dtype}", mismatches, 0, detail))
        detail = (f"outputs at +-inf, +-0 and NaN that differ from ReLU's definition over "
                  f"{len(RELU_GRID)} configurations; {reference_class.__name__} "
                  f"(Keras {keras.__version__}) ")
        detail += ("agrees with it there" if not reference_wrong else
                   f"differs from it at {len(reference_wrong)} (compared with the definition "
                   f"there instead): " + "; ".join(reference_wrong[:3]))
        if wrong:
            detail += "; differs for " + "; ".join(wrong[:3])
        checks.append(_check(f"relu/definition/{dtype}", len(wrong), 0, detail))

    # Gradients, bit for bit, everywhere and at the kinks.
    grad_dtypes = [d for d in ("float32", "float64") if d in dtypes]
    for dtype in grad_dtypes:
        x_np = relu_inputs(dtype, n)
        mismatches, bad = 0, []
        kink_mismatches = 0
        for config in RELU_GRID:
            kinks = [0.0, config["threshold"]] + (
                [config["max_value"]] if config["max_value"] is not None else [])
            want = grad_of_sum(reference_class(dtype=dtype, **config), x_np)
            got = grad_of_sum(relu_class(dtype=dtype, **config), x_np)
            ok, _ = _same_bits(got, want, flush_equivalent=False)
            at_kink = np.isin(x_np, np.array(kinks, dtype=x_np.dtype))
            kink_mismatches += int((~ok & at_kink).sum())
            if not ok.all():
                mismatches += int((~ok).sum())
                i = int(np.flatnonzero(~ok)[0])
                bad.append(f"{_relu_name(config)} (x={x_np[i]!r}: got {got[i]!r}, "
                           f"keras {want[i]!r})")
        detail = ("gradient elements whose bits differ from keras.layers.ReLU's, at random "
                  "points, +-inf, NaN and every kink")
        if bad:
            detail += "; differs for " + "; ".join(bad[:4])
        checks.append(_check(f"relu/gradient/{dtype}", mismatches, 0, detail))
        checks.append(_check(
            f"relu/gradient-at-kinks/{dtype}", kink_mismatches, 0,
            "gradient elements at x = 0, x = threshold and x = max_value that differ from "
            "Keras's convention on this backend"))

    # Central finite differences, away from the kinks.
    fd_dtype = "float64" if "float64" in dtypes else "float32"
    h = 1e-6 if fd_dtype == "float64" else 1e-2
    tol = 1e-6 if fd_dtype == "float64" else 1e-3
    rng = np.random.default_rng(1)
    worst = 0.0
    for config in RELU_GRID:
        kinks = np.array([0.0, config["threshold"]] + (
            [config["max_value"]] if config["max_value"] is not None else []))
        x_np = (rng.standard_normal(n) * 4.0).astype(np.float64)
        # Move points near a kink 20 h away from it (keeping the shape fixed
        # avoids recompiling on JAX).
        near = np.min(np.abs(x_np[:, None] - kinks[None, :]), axis=1) <= 10 * h
        x_np = np.where(near, x_np + 20 * h, x_np).astype(fd_dtype)
        layer = relu_class(dtype=fd_dtype, **config)
        plus = _to_numpy(layer(ops.convert_to_tensor((x_np + h).astype(fd_dtype))))
        minus = _to_numpy(layer(ops.convert_to_tensor((x_np - h).astype(fd_dtype))))
        fd = (plus.astype(np.float64) - minus.astype(np.float64)) / (2 * h)
        g = grad_of_sum(layer, x_np)
        worst = max(worst, float(np.max(np.abs(fd - g))))
    checks.append(_check(
        f"relu/finite-difference/{fd_dtype}", worst, tol,
        f"max |central difference (h={h:g}) - gradient| away from the kinks (> {10 * h:g} "
        f"from each); {fd_dtype} is the widest float this backend has"))
    return checks


# -- Dropout -------------------------------------------------------------------


def _dropout_call(layer, x, training=True):
    return _to_numpy(layer(x, training=training))


def _stateless_output_and_grad(layer, x_np):
    """One training call's output and d sum(output) / dx, with the same mask.

    `stateless_call` with the layer's current seed state makes the two
    computations draw the same noise (inside a JAX trace a stateful draw is
    not allowed).
    """
    from keras import ops

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def fn(x):
        out, _ = layer.stateless_call(trainable, non_trainable, x, training=True)
        return out

    out = _to_numpy(fn(ops.convert_to_tensor(x_np)))
    grad = grad_of_sum(fn, x_np)
    return out, grad


def _positive_inputs(shape, dtype, seed):
    # Nonzero inputs, so that a zero output means a dropped unit.
    rng = np.random.default_rng(seed)
    return (1.0 + rng.random(shape)).astype(_np_dtype(dtype))


def check_dropout(dropout_class=None, spatial_class=None, reference_class=None,
                  spatial_reference_class=None, quick=False, dtypes=None):
    """Checks Dropout and SpatialDropout2D classes against Keras's.

    Args:
        dropout_class: the class under test. Defaults to
            `cnnzoo.layers.Dropout`.
        spatial_class: the spatial class under test. Defaults to
            `cnnzoo.layers.SpatialDropout2D`.
        reference_class, spatial_reference_class: the references. Default
            to `keras.layers.Dropout` and `keras.layers.SpatialDropout2D`.
        quick: smaller samples (the tolerances follow the sample size).
        dtypes: float dtypes for the exactness checks.

    Returns:
        A list of `Check`s.
    """
    import keras
    from keras import ops

    if dropout_class is None:
        from cnnzoo.layers import Dropout as dropout_class
    if spatial_class is None:
        from cnnzoo.layers import SpatialDropout2D as spatial_class
    reference_class = reference_class or keras.layers.Dropout
    spatial_reference_class = spatial_reference_class or keras.layers.SpatialDropout2D
    for name, cls in (("dropout_class", dropout_class), ("spatial_class", spatial_class),
                      ("reference_class", reference_class),
                      ("spatial_reference_class", spatial_reference_class)):
        _check_layer_class(name, cls)
    dtypes = _check_dtypes(dtypes)
    backend = _backend()
    n_side = 128 if quick else 400  # n_side**2 units per statistical sample
    checks = []

    # Inference is the identity, bit for bit, with training=False and by default.
    mismatches = 0
    for dtype in dtypes:
        x_np = np.concatenate([relu_inputs(dtype, 256)]).reshape(-1, 1)
        x = ops.convert_to_tensor(x_np)
        for rate in (0.3, 0.9):
            layer = dropout_class(rate, seed=1, dtype=dtype)
            for out in (_to_numpy(layer(x, training=False)), _to_numpy(layer(x))):
                ok, _ = _same_bits(out, x_np, flush_equivalent=False)
                mismatches += int((~ok).sum()) if out.shape == x_np.shape else x_np.size
    checks.append(_check("dropout/inference-identity", mismatches, 0,
                         f"elements changed at inference (training=False and the default), "
                         f"rates 0.3 and 0.9, dtypes {', '.join(dtypes)}"))

    # Rate 0 is the identity, even in training.
    x_np = _positive_inputs((64, 64), "float32", 2)
    out = _dropout_call(dropout_class(0.0, seed=1), ops.convert_to_tensor(x_np))
    ok, _ = _same_bits(out, x_np, flush_equivalent=False)
    checks.append(_check("dropout/rate-0-identity", int((~ok).sum()), 0,
                         "elements changed by rate=0 in training"))

    for rate in (0.1, 0.5, 0.8):
        x_np = _positive_inputs((n_side, n_side), "float32", 3)
        n = x_np.size
        layer = dropout_class(rate, seed=7)
        out = _dropout_call(layer, ops.convert_to_tensor(x_np))
        dropped = out == 0
        frac = float(dropped.mean())
        se = math.sqrt(rate * (1 - rate) / n)
        checks.append(_check(f"dropout/dropped-fraction/rate={rate:g}", abs(frac - rate) / se,
                             Z_TOLERANCE,
                             f"|dropped fraction {frac:.4f} - rate| in binomial standard "
                             f"errors ({se:.2g}, n={n})"))
        # The mean of x * mask / (1 - rate) is x's, with a standard error of
        # sqrt(rate / (1 - rate) * mean(x^2) / n).
        mean_se = math.sqrt(rate / (1 - rate) * float(np.mean(x_np.astype(np.float64) ** 2)) / n)
        z = abs(float(out.astype(np.float64).mean()) - float(x_np.astype(np.float64).mean()))
        checks.append(_check(f"dropout/mean-preserved/rate={rate:g}", z / mean_se, Z_TOLERANCE,
                             f"|mean(out) - mean(x)| in standard errors ({mean_se:.2g})"))

    # Kept values are x / (1 - rate), correctly rounded in every dtype.
    tol_div = DIVISION_ULPS.get(backend, 1)
    worst_ulps, worst = 0, ""
    for dtype in dtypes:
        x_np = _positive_inputs((64, 64), dtype, 4)
        for rate in (0.1, 0.3, 0.5):
            out = _dropout_call(dropout_class(rate, seed=5, dtype=dtype),
                                ops.convert_to_tensor(x_np))
            keep = np.asarray(1.0 - rate, dtype=_np_dtype(dtype))
            want = (x_np.astype(np.float64) / keep.astype(np.float64)).astype(_np_dtype(dtype))
            kept = out != 0
            if out.dtype != x_np.dtype:
                worst_ulps, worst = math.inf, f"{dtype}: output dtype {out.dtype}"
                continue
            if not kept.any():
                continue
            ulps = _ulps(out[kept], want[kept])
            if ulps > worst_ulps:
                i = int(np.argmax(np.abs(_bits(out[kept]).astype(np.int64)
                                         - _bits(want[kept]).astype(np.int64))))
                worst_ulps = ulps
                worst = (f"{dtype} rate {rate}: x={x_np[kept][i]!r} -> {out[kept][i]!r}, "
                         f"x/(1-rate)={want[kept][i]!r}")
    checks.append(_check(
        "dropout/kept-values-scaled", worst_ulps, tol_div,
        "max distance in ulps of kept elements from x / (1 - rate) correctly rounded in the "
        f"dtype ({', '.join(dtypes)}); {tol_div} allowed on {backend}"
        + (" (XLA:CPU's vectorized division is not correctly rounded)" if tol_div else "")
        + (f"; worst: {worst}" if worst else "")))

    # noise_shape broadcasts as in Keras: one decision per (batch, feature).
    x_np = _positive_inputs((32, 16, 24), "float32", 6)
    out = _dropout_call(dropout_class(0.5, noise_shape=(None, 1, 24), seed=3),
                        ops.convert_to_tensor(x_np))
    kept = out != 0
    varying = int(np.sum(kept.any(axis=1) != kept.all(axis=1)))
    want = _dropout_call(reference_class(0.5, noise_shape=(None, 1, 24), seed=3),
                         ops.convert_to_tensor(x_np)) != 0
    checks.append(_check("dropout/noise-shape-broadcast", varying + int(np.sum(kept != want)), 0,
                         "(batch, feature) columns whose mask varies over the broadcast axis, "
                         "plus elements whose mask differs from Keras's for noise_shape="
                         "(None, 1, 24)"))

    # Gradient = mask / (1 - rate), from the same call's mask.
    mismatches = 0
    for rate in (0.2, 0.5):
        x_np = _positive_inputs((32, 32), "float32", 8)
        layer = dropout_class(rate, seed=9)
        out, grad = _stateless_output_and_grad(layer, x_np)
        keep = np.float32(1.0 - rate)
        want = np.where(out != 0, np.float32(1.0) / keep, np.float32(0.0)).astype(np.float32)
        ok, _ = _same_bits(grad.astype(np.float32), want, flush_equivalent=False)
        mismatches += int((~ok).sum())
    checks.append(_check("dropout/gradient", mismatches, 0,
                         "gradient elements not equal to mask / (1 - rate) (rates 0.2, 0.5)"))

    # Seeds: the same seed, the same mask; another seed or the next call, another.
    x = ops.convert_to_tensor(_positive_inputs((64, 64), "float32", 10))
    a = _dropout_call(dropout_class(0.5, seed=11), x) != 0
    b = _dropout_call(dropout_class(0.5, seed=11), x) != 0
    c = _dropout_call(dropout_class(0.5, seed=12), x) != 0
    layer = dropout_class(0.5, seed=11)
    first = _dropout_call(layer, x) != 0
    second = _dropout_call(layer, x) != 0
    same_seed_diff = int(np.sum(a != b))
    # Two independent masks at rate 0.5 differ in half the elements; 0 or
    # nearly 0 means the seed (or the layer's state) is ignored.
    other_seed_same = float(np.mean(a == c))
    next_call_same = float(np.mean(first == second))
    checks.append(_check("dropout/same-seed-same-mask", same_seed_diff, 0,
                         "elements whose mask differs between two layers with seed=11"))
    n = a.size
    se = math.sqrt(0.25 / n)
    checks.append(_check("dropout/different-seed-different-mask",
                         abs(other_seed_same - 0.5) / se, Z_TOLERANCE,
                         f"agreement of the masks of seeds 11 and 12 ({other_seed_same:.3f}) vs "
                         f"0.5 for independent masks, in standard errors"))
    checks.append(_check("dropout/successive-calls-differ", abs(next_call_same - 0.5) / se,
                         Z_TOLERANCE,
                         f"agreement of one layer's first and second masks "
                         f"({next_call_same:.3f}) vs 0.5, in standard errors"))

    # Against Keras for the same seed: the masks and the kept values.
    identical_expected = MASKS_BIT_IDENTICAL.get(backend, False)
    mask_diff, ulps, z_worst = 0, 0, 0.0
    for dtype in [d for d in dtypes if d != "float64"]:
        x_np = _positive_inputs((n_side, n_side), dtype, 12)
        x = ops.convert_to_tensor(x_np)
        for rate in (0.1, 0.5):
            ours = dropout_class(rate, seed=21, dtype=dtype)
            theirs = reference_class(rate, seed=21, dtype=dtype)
            for _ in range(2):  # the second call checks the seed state advances alike
                got = _dropout_call(ours, x)
                want = _dropout_call(theirs, x)
                mask_diff += int(np.sum((got != 0) != (want != 0)))
                p1, p2 = float(np.mean(got == 0)), float(np.mean(want == 0))
                pooled = (p1 + p2) / 2
                se2 = math.sqrt(max(pooled * (1 - pooled), 1e-12) * 2 / got.size)
                z_worst = max(z_worst, abs(p1 - p2) / se2)
                both = (got != 0) & (want != 0)
                if got.dtype == want.dtype and both.any():
                    gi = _bits(got[both]).astype(np.int64)
                    wi = _bits(want[both]).astype(np.int64)
                    ulps = max(ulps, int(np.max(np.abs(gi - wi))))
    if identical_expected:
        checks.append(_check(
            "dropout/mask-equals-keras", mask_diff, 0,
            f"elements whose mask differs from keras.layers.Dropout's for the same seed, two "
            f"successive calls, rates 0.1 and 0.5; bit-identical on {backend} (measured)"))
    else:
        checks.append(_check(
            "dropout/mask-matches-keras-statistically", z_worst, Z_TOLERANCE,
            f"masks are not bit-identical to Keras's on {backend} ({mask_diff} elements "
            f"differ); two-proportion z of the dropped fractions"))
    tol_ulps = KEPT_VALUE_ULPS.get(backend, 1)
    checks.append(_check(
        "dropout/kept-values-vs-keras-ulps", ulps, tol_ulps,
        f"max ulp distance of kept values from keras.layers.Dropout's; {tol_ulps} allowed on "
        f"{backend}" + (f" ({KEPT_VALUE_WHY[backend]})" if backend in KEPT_VALUE_WHY else "")))

    # SpatialDropout2D drops whole feature maps, in both data formats.
    for data_format, shape, axes in (("channels_last", (16, 6, 6, 32), (1, 2)),
                                     ("channels_first", (16, 32, 6, 6), (2, 3))):
        x_np = _positive_inputs(shape, "float32", 13)
        x = ops.convert_to_tensor(x_np)
        out = _dropout_call(spatial_class(0.5, data_format=data_format, seed=4), x)
        kept = out != 0
        mixed = int(np.sum(kept.any(axis=axes) != kept.all(axis=axes)))
        maps = kept.all(axis=axes)
        frac = 1.0 - float(maps.mean())
        se = math.sqrt(0.25 / maps.size)
        want = _dropout_call(spatial_reference_class(0.5, data_format=data_format, seed=4), x)
        keras_diff = int(np.sum(kept != (want != 0)))
        ok, _ = _same_bits(_to_numpy(spatial_class(0.5, data_format=data_format, seed=4)(x)),
                           x_np, flush_equivalent=False)
        checks.append(_check(f"spatial-dropout/whole-maps/{data_format}", mixed, 0,
                             "feature maps partly dropped (must be all or nothing)"))
        checks.append(_check(f"spatial-dropout/dropped-fraction/{data_format}",
                             abs(frac - 0.5) / se, Z_TOLERANCE,
                             f"dropped maps {frac:.3f} vs rate 0.5, in binomial standard errors "
                             f"(n={maps.size})"))
        if identical_expected:
            checks.append(_check(
                f"spatial-dropout/equals-keras/{data_format}", keras_diff, 0,
                "elements whose mask differs from keras.layers.SpatialDropout2D's for the same "
                "seed"))
        checks.append(_check(f"spatial-dropout/inference-identity/{data_format}",
                             int((~ok).sum()), 0, "elements changed at inference"))
    return checks


# -- Models --------------------------------------------------------------------


def _uses_default_layers(relu_class, dropout_class, spatial_class):
    from cnnzoo import layers

    return (relu_class in (None, layers.ReLU) and dropout_class in (None, layers.Dropout)
            and spatial_class in (None, layers.SpatialDropout2D))


def _swap_layers(model, relu_class, dropout_class, spatial_class):
    """A copy of a keras-implementation model with its ReLU/Dropout layers swapped."""
    import keras

    from cnnzoo import layers

    relu_class = relu_class or layers.ReLU
    dropout_class = dropout_class or layers.Dropout
    spatial_class = spatial_class or layers.SpatialDropout2D

    def clone(layer):
        config = layer.get_config()
        if type(layer) is keras.layers.ReLU:
            return relu_class.from_config(config)
        if type(layer) is keras.layers.SpatialDropout2D:
            return spatial_class.from_config(config)
        if type(layer) is keras.layers.Dropout:
            return dropout_class.from_config(config)
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def model_input_shape(name):
    """The small input each model is checked on: its minimum size, at least 8."""
    import cnnzoo

    info = cnnzoo.model_info(name)
    size = max(int(info["min_input_size"]), 8)
    return (size, size, int(info["default_input_shape"][2]))


def _build_pair(name, kwargs, relu_class, dropout_class, spatial_class):
    import keras

    import cnnzoo

    keras.utils.set_random_seed(0)
    reference = cnnzoo.create_model(name, implementation="keras", **kwargs)
    if _uses_default_layers(relu_class, dropout_class, spatial_class):
        candidate = cnnzoo.create_model(name, implementation="primitive", **kwargs)
    else:
        candidate = _swap_layers(reference, relu_class, dropout_class, spatial_class)
    candidate.set_weights(reference.get_weights())
    return reference, candidate


def _count_layers(model, classes):
    return sum(1 for layer in model.layers if type(layer) in classes)


def check_model(name, relu_class=None, dropout_class=None, spatial_class=None, batch_size=2):
    """Checks one zoo model built on the layers under test against Keras's.

    Builds the model twice with the paper's dropout (`"keras"` and
    `"primitive"`, or the given classes), copies the weights, and compares
    inference outputs; then again with dropout off, compares the training
    loss before and after one SGD step.

    Returns:
        A list of `Check`s.
    """
    import keras
    from keras import ops

    from cnnzoo import layers

    batch_size = v.check_int("batch_size", batch_size, low=1)
    shape = model_input_shape(name)
    kwargs = {"input_shape": shape, "num_classes": 10}
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((batch_size,) + shape).astype("float32")
    y_np = rng.integers(0, 10, size=(batch_size,))
    checks = []

    reference, candidate = _build_pair(name, kwargs, relu_class, dropout_class, spatial_class)
    keras_layers = (keras.layers.ReLU, keras.layers.Dropout, keras.layers.SpatialDropout2D)
    ours = (relu_class or layers.ReLU, dropout_class or layers.Dropout,
            spatial_class or layers.SpatialDropout2D)
    left = _count_layers(candidate, keras_layers)
    swapped = _count_layers(candidate, ours)
    expected = _count_layers(reference, keras_layers)
    checks.append(_check(f"model/{name}/layers-swapped", left + abs(swapped - expected), 0,
                         f"keras.layers ReLU/Dropout left in the candidate ({left}) plus the "
                         f"difference between swapped ({swapped}) and expected ({expected})"))
    x = ops.convert_to_tensor(x_np)
    want = _to_numpy(reference(x, training=False))
    got = _to_numpy(candidate(x, training=False))
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    device = "accelerator" if runtime.accelerators() else "cpu"
    checks.append(_check(f"model/{name}/inference", diff, MODEL_OUTPUT_ATOL[device],
                         f"max |output difference| at inference, input {shape}, the paper's "
                         f"dropout; on {device}: "
                         + ("bit-exact expected (the layers are)" if device == "cpu" else
                            "fused conv + ReLU kernels may round differently")))
    del reference, candidate

    off = {"dropout_rate": 0.0, "block_dropout_rate": 0.0}
    info_kwargs = _supported_off(name)
    off = {k: val for k, val in off.items() if k in info_kwargs}
    reference, candidate = _build_pair(name, {**kwargs, **off}, relu_class, dropout_class,
                                       spatial_class)
    losses = []
    for model in (reference, candidate):
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss="sparse_categorical_crossentropy", jit_compile=False)
        first = float(model.train_on_batch(x_np, y_np))
        second = float(model.train_on_batch(x_np, y_np))
        losses.append((first, second))
    (k1, k2), (c1, c2) = losses
    rel = max(abs(c1 - k1) / max(abs(k1), 1e-12), abs(c2 - k2) / max(abs(k2), 1e-12))
    if not all(math.isfinite(val) for val in (k1, k2, c1, c2)):
        rel = math.nan
    checks.append(_check(f"model/{name}/training-loss", rel, MODEL_LOSS_RTOL,
                         f"relative difference of the training loss with dropout off, before "
                         f"({c1:.6g} vs {k1:.6g}) and after one SGD step ({c2:.6g} vs {k2:.6g})"))
    return checks


def _supported_off(name):
    import cnnzoo

    return cnnzoo.model_info(name)["supported_kwargs"]


def quick_models():
    """The two smallest registered models (by parameter count)."""
    import cnnzoo

    names = cnnzoo.list_models()
    return sorted(names, key=lambda n: cnnzoo.model_info(n)["params"])[:2]


# -- everything ----------------------------------------------------------------


def verify(quick=False, models=None, relu_class=None, dropout_class=None,
           spatial_dropout_class=None, layers=True, progress=None):
    """Runs the verification suite.

    Args:
        quick: smaller samples and only the two smallest models (under a
            minute on 2 CPU cores).
        models: an fnmatch pattern (or list) of model names, a list of names,
            or `None` for every model (`quick`: the two smallest). `[]` skips
            the model checks.
        relu_class, dropout_class, spatial_dropout_class: the layer classes
            under test. Default to `cnnzoo.layers`'s; pass others (a wrong
            ReLU, say) to check that the suite catches them.
        layers: run the layer checks.
        progress: optional callable taking one line of text.

    Returns:
        A `Report`.

    Example:

    >>> report = cnnzoo.verify.verify(quick=True)
    >>> report.passed
    True
    >>> print(report.format_table())
    """
    import keras

    import cnnzoo

    v.check_bool("quick", quick)
    v.check_bool("layers", layers)
    say = progress or (lambda line: None)
    start = time.perf_counter()
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax", "torch"):
        v.fail("Expected the tensorflow, jax or torch backend.", "backend", backend)
    if isinstance(models, (list, tuple)) and not all(isinstance(m, str) for m in models):
        v.fail("Expected `models` to be a pattern, a list of names or None.", "models", models)
    if models is None:
        names = quick_models() if quick else cnnzoo.list_models()
    elif isinstance(models, str) or (isinstance(models, (list, tuple))
                                     and any(any(ch in m for ch in "*?[") for m in models)):
        names = cnnzoo.list_models(models)
        if not names:
            v.fail("Expected a pattern matching at least one model (see `cnnzoo list`).",
                   "models", models)
    elif isinstance(models, (list, tuple)):
        names = list(models)
        for name in names:
            cnnzoo.model_info(name)  # a clear error for an unknown name
    else:
        v.fail("Expected `models` to be a pattern, a list of names or None.", "models", models)

    if not layers and not names:
        v.fail("Expected at least one check to be selected: layers=True or at least one model.",
               "models", models)

    checks = []
    if layers:
        say("checking ReLU against keras.layers.ReLU ...")
        checks += check_relu(relu_class, quick=quick)
        say("checking Dropout and SpatialDropout2D against keras.layers ...")
        checks += check_dropout(dropout_class, spatial_dropout_class, quick=quick)
    policy = keras.config.dtype_policy()
    try:
        for i, name in enumerate(names):
            say(f"checking model {name} ({i + 1}/{len(names)}) ...")
            checks += check_model(name, relu_class, dropout_class, spatial_dropout_class)
            keras.backend.clear_session()  # which resets the dtype policy to float32
            keras.config.set_dtype_policy(policy)
    finally:
        keras.config.set_dtype_policy(policy)  # the caller's, as it was

    notes = [
        f"dropout masks bit-identical to Keras's for the same seed on {backend}: "
        + ("yes (measured and checked)" if MASKS_BIT_IDENTICAL.get(backend)
           else "no (checked statistically)"),
        "ReLU forward: bit-exact, except that zero/subnormal pairs count as equal whatever "
        "their sign (TensorFlow's ReLU kernel flushes subnormals and signs zeros depending "
        "on the SIMD lane); at +-inf, +-0 and NaN against ReLU's definition "
        "(`relu/definition/*` says where keras.layers.ReLU differs from it: Keras before "
        "3.15 gives NaN at -inf and at NaN with a threshold), elsewhere against "
        "keras.layers.ReLU",
        f"kept dropout values: within {DIVISION_ULPS.get(backend, 1)} ulp of x/(1-rate) "
        f"correctly rounded, and within {KEPT_VALUE_ULPS.get(backend, 1)} ulp of Keras's "
        "(TensorFlow's Keras multiplies by a rounded 1/(1-rate); torch's divides float16 and "
        "bfloat16 by 1-rate rounded to float32; XLA:CPU's vectorized division is not "
        "correctly rounded)",
        f"training loss after one SGD step: relative tolerance {MODEL_LOSS_RTOL:g} "
        "(the gradient goes through fused backend kernels on one side)",
    ]
    return Report(checks, backend=backend, keras_version=keras.__version__, notes=notes,
                  seconds=time.perf_counter() - start)
