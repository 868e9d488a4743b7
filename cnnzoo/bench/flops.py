"""Achieved FLOP/s of a training step against a matmul ceiling measured in the same run.

FLOPs are counted analytically from the layer shapes, not by a profiler, so
the count is the same on every backend (`cnnzoo._flops`, whose docstring
gives the method).

The ceiling is a large square matmul through the same backend (`keras.ops`),
timed interleaved with the training step: float32 x float32 for the float32
model, bfloat16 x bfloat16 for the mixed-bfloat16 model. The ratio
"achieved / ceiling" is computed per interleaved repeat.

The target is judged at batch 128, the usual batch for VGG on 32x32 images.
Two more rows show where the time of a smaller batch goes: VGG's fully
connected head holds most of the parameters (19M of VGG11's 28M at 32x32),
and its cost per step hardly shrinks with the batch. At a small batch its
matrix products read the 4096x4096 weights for a few rows each (memory-bound),
and Adam's update makes about a dozen elementwise passes over every
parameter, one kernel per `keras.ops` call, since Keras 3's optimizers are not
fused on TensorFlow. The convolutional stack alone runs close to the ceiling.
"""

from cnnzoo import runtime
from cnnzoo._flops import training_flops, weight_layers
from cnnzoo.bench import common, harness

NAME = "flops"
# (model, input size, batch size, training steps per sample) in quick / full mode.
# Batch 128 is the usual batch for VGG on 32x32 (CIFAR-sized) images.
QUICK = ("vgg11", 32, 128, 1)
FULL = ("vgg16", 32, 128, 2)
# The smaller batch of the breakdown rows: the whole model, and its
# convolutional stack alone, in float32.
SMALL_BATCH = 32
MATMUL_N = 2048


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


def conv_stack(model_name, input_shape, num_classes):
    """The zoo model's convolutional stack with a one-layer head.

    `include_top=False, pooling="max"` and one softmax `Dense`: the same
    convolutions without VGG's 4096-unit fully connected layers.
    """
    import keras

    import cnnzoo

    base = cnnzoo.create_model(model_name, input_shape=input_shape, include_top=False,
                               pooling="max")
    outputs = keras.layers.Dense(num_classes, activation="softmax",
                                 name="predictions")(base.output)
    return keras.Model(base.input, outputs, name=f"{model_name}_conv_stack")


def _contender(fns, flops, key, model, shape, batch_size, steps):
    # XLA as cnnzoo's default has it: off on a CPU with TensorFlow, on with JAX
    # (which otherwise runs op by op) and on accelerators.
    common.compile_default(model, jit_compile=runtime.resolve_jit("auto"))
    x, y = common.batch(shape, 10, batch_size)
    fns[key] = common.train_steps(model, x, y, steps)
    flops[key] = training_flops(model) * batch_size * steps


def run(quick=True, repeats=None, config=None, matmul_n=MATMUL_N, small_batch=SMALL_BATCH):
    """Returns the result rows.

    Rows: the training step in float32 (target >= 0.80) and in mixed
    bfloat16 at the configured batch, each against the matmul ceiling of
    its dtype; then, where `small_batch` is set, where the time of a
    smaller batch goes: the whole model and its convolutional stack alone
    (`conv_stack`), in float32.

    Args:
        quick: the `QUICK` model and sizes, else `FULL`.
        repeats: interleaved repeats (default: 5 quick, 9 full).
        config: `(model, input size, batch size, steps)` replacing them.
        matmul_n: the ceiling's matmul size (a GPU needs a larger one).
        small_batch: the batch of the breakdown rows (`None`: no breakdown).
    """
    import keras

    model_name, size, batch_size, steps = config or (QUICK if quick else FULL)
    repeats = repeats or (5 if quick else 9)
    if model_name not in common.available_models([model_name]):
        return [harness.unavailable(NAME, f"`{model_name}` is not registered")]
    shape = (size, size, 3)
    fns, flops = {}, {}
    for policy, dtype in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
        with runtime.dtype_policy(policy):
            model = common.zoo_model(model_name, shape, 10)
        _contender(fns, flops, f"step {dtype}", model, shape, batch_size, steps)
        fns[f"matmul {dtype}"], flops[f"matmul {dtype}"] = matmul_fn(matmul_n, dtype)
    if small_batch:
        with runtime.dtype_policy("float32"):
            whole = common.zoo_model(model_name, shape, 10)
            stack = conv_stack(model_name, shape, 10)
        _contender(fns, flops, "small whole", whole, shape, small_batch, steps)
        _contender(fns, flops, "small stack", stack, shape, small_batch, steps)
        params = {"whole": whole.count_params(), "stack": stack.count_params(),
                  "head": sum(layer.count_params() for layer in weight_layers(whole)
                              if isinstance(layer, keras.layers.Dense))}
    times = harness.interleave(fns, repeats=repeats, warmup=1)

    def fraction(step, dtype):
        mm = f"matmul {dtype}"
        achieved = [flops[step] / t for t in times[step]]
        ceiling = [flops[mm] / t for t in times[mm]]
        summary = harness.summarize([a / c for a, c in zip(achieved, ceiling)])
        context = (f"{harness.summarize(achieved).median / 1e9:.0f} GFLOP/s achieved, "
                   f"ceiling {harness.summarize(ceiling).median / 1e9:.0f} GFLOP/s "
                   f"({matmul_n}x{matmul_n} matmul)")
        return summary, context

    counted = "FLOPs counted analytically (3x forward conv/dense FLOPs)"
    rows = []
    for dtype in ("float32", "bfloat16"):
        summary, context = fraction(f"step {dtype}", dtype)
        target = ">= 0.80" if dtype == "float32" else None
        rows.append(harness.row(
            NAME, f"{model_name} training step / {dtype} matmul ceiling",
            summary=summary, metric="fraction", target=target,
            met=harness.at_least(summary, 0.8) if target else None,
            context=f"{size}x{size}x3, batch {batch_size}: {context}",
            note=counted + ("; model under the mixed_bfloat16 policy"
                            if dtype == "bfloat16" else "")))
    if small_batch:
        whole_ms = harness.summarize(times["small whole"]).median * 1e3 / steps
        stack_ms = harness.summarize(times["small stack"]).median * 1e3 / steps
        summary, context = fraction("small whole", "float32")
        rows.append(harness.row(
            NAME, f"{model_name} training step at batch {small_batch} / float32 matmul ceiling",
            summary=summary, metric="fraction",
            context=(f"{size}x{size}x3: {context}; {whole_ms:.0f} ms per step, of which the "
                     f"convolutional stack alone takes {stack_ms:.0f} ms"),
            note=(f"{params['whole']:,} parameters, {params['head']:,} of them in the "
                  "fully connected head: at a small batch the head's matrix "
                  "products are memory-bound and Adam's update (about a dozen elementwise "
                  "passes over every parameter) costs the same whatever the batch")))
        summary, context = fraction("small stack", "float32")
        rows.append(harness.row(
            NAME, f"{model_name} convolutional stack at batch {small_batch} / float32 "
                  "matmul ceiling",
            summary=summary, metric="fraction",
            context=(f"{size}x{size}x3: {context}; the same convolutions with global max "
                     f"pooling and one Dense layer instead of the 4096-unit head "
                     f"({params['stack']:,} parameters)"),
            note=counted))
    return rows
