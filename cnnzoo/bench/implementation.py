"""`implementation="primitive"` against `"keras"`, with and without XLA.

The same model (`simple_cnn` with dropout in every stage and in the head, so
that every ReLU and every Dropout of the model is swapped) is built both
ways and trained on the same batch, four contenders interleaved: keras and
primitive, each compiled with `jit_compile=False` and `True`. Two ratios:
primitive's speed relative to keras without XLA and under XLA (target:
within 5% under XLA, i.e. >= 0.95). A third line puts XLA against no XLA for
the keras layers, the measurement behind `jit="auto"` being off on a CPU.

Why primitive layers cost more without XLA: each `keras.ops` call is its
own kernel launch and its own pass over memory (a ReLU written as
`where(greater(x, 0), x, 0)` reads and writes the activation three times,
and its gradient is computed the same way), where `keras.layers.ReLU` is
one fused kernel (and TensorFlow fuses it into the convolution). XLA fuses
the elementwise chain back into one loop, which closes the gap.
"""

from cnnzoo.bench import common, harness

NAME = "implementation"
MODEL = "simple_cnn"
# (input size, batch size, steps per sample without XLA, with XLA) in quick /
# full mode. TensorFlow's XLA on a CPU is many times slower per step than its
# oneDNN kernels, so the XLA contenders do fewer steps per timed call and
# ratios compare time per step.
QUICK = (16, 32, 8, 2)
FULL = (28, 128, 10, 2)


def run(quick=True, repeats=None):
    """Returns the result rows."""
    size, batch_size, steps, xla_steps = QUICK if quick else FULL
    repeats = repeats or (7 if quick else 9)
    try:
        from cnnzoo.layers import factory

        factory.layer_classes("primitive")
    except (ImportError, AttributeError) as error:
        return [harness.unavailable(NAME, f"the primitive layers do not import ({error})")]
    shape = (size, size, 1)
    x, y = common.batch(shape, 10, batch_size)
    fns, work = {}, {}
    for implementation in ("keras", "primitive"):
        for jit in (False, True):
            model = common.zoo_model(MODEL, shape, 10, implementation=implementation,
                                     dropout_rate=0.5, block_dropout_rate=0.25)
            common.compile_default(model, jit_compile=jit)
            key = (implementation, jit)
            work[key] = xla_steps if jit else steps
            fns[key] = common.train_steps(model, x, y, work[key])
    times = harness.interleave(fns, repeats=repeats, warmup=1)
    per_step = {k: harness.summarize(t).median / work[k] for k, t in times.items()}
    context = ", ".join(f"{impl}{' XLA' if jit else ''} {harness.fmt_seconds(s)}/step"
                        for (impl, jit), s in per_step.items())
    rows = []
    context = f"{size}x{size}x1, batch {batch_size}; " + context
    no_xla = harness.speedup(times, ("keras", False), ("primitive", False), work)
    rows.append(harness.row(NAME, f"{MODEL}: primitive vs keras layers, no XLA", summary=no_xla,
                            context=context,
                            note="gap: one kernel per keras.ops call, nothing fused (see "
                                 "cnnzoo/bench/implementation.py)"))
    xla = harness.speedup(times, ("keras", True), ("primitive", True), work)
    rows.append(harness.row(NAME, f"{MODEL}: primitive vs keras layers, XLA", summary=xla,
                            target=">= 0.95", met=harness.at_least(xla, 0.95)))
    jit_gain = harness.speedup(times, ("keras", False), ("keras", True), work)
    rows.append(harness.row(NAME, f"{MODEL}: XLA vs no XLA (keras layers)", summary=jit_gain,
                            note="why jit='auto' is off on a CPU when this is below 1"))
    return rows
