"""Achieved FLOP/s of a training step against a matmul ceiling measured in the same run.

FLOPs are counted analytically from the layer shapes (method below), not by
a profiler, so the count is the same on every backend:

- `Conv2D`: `2 * H_out * W_out * k_h * k_w * C_in / groups * C_out` per
  image; `DepthwiseConv2D`: `2 * H_out * W_out * k_h * k_w * C_in * mult`;
  `Dense`: `2 * units_in * units_out` per row. Bias, activation, pooling and
  normalization FLOPs are left out (they are memory-bound and small).
- A training step is 3x the forward FLOPs (forward, gradient with respect to
  the weights, gradient with respect to the input), minus the input
  gradient of the first weight layer, which nothing needs.

The ceiling is a large square matmul through the same backend (`keras.ops`),
timed interleaved with the training step: float32 x float32 for the float32
model, bfloat16 x bfloat16 for the mixed-bfloat16 model. The ratio
"achieved / ceiling" is computed per interleaved repeat.
"""

from cnnzoo.bench import common, harness

NAME = "flops"
# (model, input size, batch size, training steps per sample) in quick / full mode.
QUICK = ("vgg11", 32, 32, 1)
FULL = ("vgg16", 32, 64, 2)
MATMUL_N = 2048


def _weight_layers(model):
    """The model's layers in call order, nested models flattened."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _weight_layers(layer)
        else:
            yield layer


def forward_flops(model):
    """Forward FLOPs per example, and those of the first weight layer.

    Returns:
        `(total, first)`: FLOPs of Conv2D, DepthwiseConv2D and Dense layers
        per example, and the FLOPs of the first of them (whose input
        gradient a training step does not compute).
    """
    import keras

    total, first = 0, None
    for layer in _weight_layers(model):
        flops = 0
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            flops = 2 * h * w * kh * kw * c_out
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            _, h, w, c_out = layer.output.shape
            flops = 2 * h * w * kh * kw * (c_in // layer.groups) * c_out
        elif isinstance(layer, keras.layers.Dense):
            rows = 1
            for d in layer.input.shape[1:-1]:
                rows *= d
            flops = 2 * rows * layer.input.shape[-1] * layer.units
        if flops:
            total += flops
            if first is None:
                first = flops
    return total, first or 0


def training_flops(model):
    """FLOPs of one training step per example (see the module docstring)."""
    total, first = forward_flops(model)
    return 3 * total - first


def matmul_fn(n, dtype):
    """A closure timing one `n x n` matmul in `dtype`, and its FLOPs."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    a = keras.ops.cast(keras.ops.convert_to_tensor(rng.standard_normal((n, n), "float32")), dtype)
    b = keras.ops.cast(keras.ops.convert_to_tensor(rng.standard_normal((n, n), "float32")), dtype)

    def run():
        common.block(keras.ops.matmul(a, b))

    return run, 2 * n ** 3


def run(quick=True, repeats=None, config=None, matmul_n=MATMUL_N):
    """Returns the result rows.

    Args:
        quick: the `QUICK` model and sizes, else `FULL`.
        repeats: interleaved repeats (default: 5 quick, 9 full).
        config: `(model, input size, batch size, steps)` replacing them.
        matmul_n: the ceiling's matmul size (a GPU needs a larger one).
    """
    model_name, size, batch_size, steps = config or (QUICK if quick else FULL)
    repeats = repeats or (5 if quick else 9)
    if model_name not in common.available_models([model_name]):
        return [harness.unavailable(NAME, f"`{model_name}` is not registered")]
    shape = (size, size, 3)
    fns, flops = {}, {}
    for policy, dtype in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
        with common.dtype_policy(policy):
            model = common.zoo_model(model_name, shape, 10)
        common.compile_default(model, jit_compile=False)
        x, y = common.batch(shape, 10, batch_size)
        fns[f"step {dtype}"] = common.train_steps(model, x, y, steps)
        flops[f"step {dtype}"] = training_flops(model) * batch_size * steps
        fns[f"matmul {dtype}"], flops[f"matmul {dtype}"] = matmul_fn(matmul_n, dtype)
    times = harness.interleave(fns, repeats=repeats, warmup=1)
    rows = []
    for dtype in ("float32", "bfloat16"):
        step, mm = f"step {dtype}", f"matmul {dtype}"
        achieved = [flops[step] / t for t in times[step]]
        ceiling = [flops[mm] / t for t in times[mm]]
        fraction = harness.summarize([a / c for a, c in zip(achieved, ceiling)])
        target = ">= 0.80" if dtype == "float32" else None
        rows.append(harness.row(
            NAME, f"{model_name} training step / {dtype} matmul ceiling",
            summary=fraction, metric="fraction", target=target,
            met=harness.at_least(fraction, 0.8) if target else None,
            context=(f"{size}x{size}x3, batch {batch_size}: "
                     f"{harness.summarize(achieved).median / 1e9:.0f} GFLOP/s achieved, "
                     f"ceiling {harness.summarize(ceiling).median / 1e9:.0f} GFLOP/s "
                     f"({matmul_n}x{matmul_n} matmul)"),
            note="FLOPs counted analytically (3x forward conv/dense FLOPs)"
                 + ("; model under the mixed_bfloat16 policy" if dtype == "bfloat16" else "")))
    return rows
