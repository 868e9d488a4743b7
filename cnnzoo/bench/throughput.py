"""Training throughput: cnnzoo models against the same architecture built the plain way.

For each model three contenders train on the same fixed batch, interleaved:

- `plain`: keras.applications (`weights=None`) or a hand-written
  `keras.Sequential` for `simple_cnn`, compiled with Keras defaults
  (float32, `jit_compile="auto"`, which is off on a CPU);
- `cnnzoo float32`: the zoo model, built as the plain build's architecture
  (`common.SAME_ARCHITECTURE`: ResNet50 as v1, VGG16 and MobileNetV2
  without head dropout), in float32 with the runtime's XLA choice (off for
  TensorFlow on a CPU, as Keras's "auto" is): same precision as the plain
  build, so the ratio isolates how the model is built (target >= 0.98);
- `cnnzoo default`: the zoo model with `cnnzoo.runtime.configure()`'s
  choices (mixed bfloat16 on AMX / AVX-512 BF16 CPUs and recent GPUs, XLA
  on accelerators only); target >= 2.5x on a CPU with AMX.
"""

from cnnzoo import runtime
from cnnzoo.bench import common, harness

NAME = "throughput"
# name -> (input size, channels, batch size, steps per timed sample) in quick / full mode.
# Batch 32 is `fit`'s default; simple_cnn, tiny, runs at 128 so that a step is not all overhead.
# Since each first step is traced once (`prepare_training`), the time that
# saved goes to longer, steadier timed samples (about 0.5 s each: shorter ones
# scatter more on a shared machine).
QUICK = {
    "simple_cnn": (28, 1, 128, 20),
    "vgg16": (32, 3, 32, 2),
    "resnet50": (32, 3, 32, 2),
    "mobilenet_v2": (32, 3, 32, 8),
}
FULL = {
    "simple_cnn": (28, 1, 128, 20),
    "vgg16": (32, 3, 32, 2),
    "resnet50": (32, 3, 32, 2),
    "mobilenet_v2": (32, 3, 64, 2),
}
NUM_CLASSES = 10


def measure(name, size, channels, batch_size, steps, repeats, runtime_choice):
    """Interleaved training throughput of one model's three builds."""
    shape = (size, size, channels)
    plain = common.compile_default(common.plain_model(name, shape, NUM_CLASSES))
    with runtime.dtype_policy("float32"):
        zoo32 = common.zoo_model(name, shape, NUM_CLASSES)
    common.compile_default(zoo32, jit_compile=runtime_choice["jit"])
    x, y = common.batch(shape, NUM_CLASSES, batch_size)
    # Untimed: every contender's first step is traced once, not twice (see
    # `cnnzoo.runtime.prepare_training`); what is timed is unchanged.
    for model in (plain, zoo32):
        runtime.prepare_training(model, x, y)
    fns = {
        "plain": common.train_steps(plain, x, y, steps),
        "cnnzoo float32": common.train_steps(zoo32, x, y, steps),
    }
    # Where the default is float32 the two cnnzoo contenders are one model:
    # it is built, traced and timed once.
    same = runtime_choice["precision"] == "float32"
    if not same:
        with runtime.dtype_policy(runtime_choice["precision"]):
            zoo_default = common.zoo_model(name, shape, NUM_CLASSES)
        common.compile_default(zoo_default, jit_compile=runtime_choice["jit"])
        runtime.prepare_training(zoo_default, x, y)
        fns["cnnzoo default"] = common.train_steps(zoo_default, x, y, steps)
    times = harness.interleave(fns, repeats=repeats, warmup=1)
    if same:
        times["cnnzoo default"] = times["cnnzoo float32"]
    images = batch_size * steps
    return times, images, (plain.count_params(), zoo32.count_params())


def run(quick=True, models=None, repeats=None, table=None):
    """Returns the result rows (see `cnnzoo.bench.harness.row`).

    Args:
        quick: the `QUICK` sizes, else `FULL`.
        models: the zoo names to measure (default: every name of the table).
        repeats: interleaved repeats (default: 5 quick, 9 full).
        table: `{name: (input size, channels, batch size, steps)}` replacing
            the built-in sizes (`benchmarks/gpu.py` uses GPU-sized batches).
    """
    table = table or (QUICK if quick else FULL)
    repeats = repeats or (5 if quick else 9)
    wanted = list(models or table)
    rows = []
    present = common.available_models(wanted)
    for name in wanted:
        if name not in present:
            rows.append(harness.unavailable(NAME, f"`{name}` is not registered in the zoo yet",
                                            name=f"{name}: cnnzoo vs plain Keras"))
            continue
        size, channels, batch_size, steps = table[name]
        choice = runtime.resolve(model=name)
        times, images, (p_plain, p_zoo) = measure(name, size, channels, batch_size, steps,
                                                  repeats, choice)
        per_image = {k: harness.fmt_seconds(harness.summarize(t).median / images)
                     for k, t in times.items()}
        context = (f"{size}x{size}x{channels}, batch {batch_size}; per image: plain "
                   f"{per_image['plain']}, cnnzoo float32 {per_image['cnnzoo float32']}, "
                   f"cnnzoo default {per_image['cnnzoo default']}")
        matched = common.SAME_ARCHITECTURE.get(name)
        note = ("cnnzoo built with " + ", ".join(f"{k}={v!r}" for k, v in matched.items())
                if matched else "")
        if p_plain != p_zoo:
            note += (f"{'; ' if note else ''}parameters differ: plain {p_plain:,}, "
                     f"cnnzoo {p_zoo:,}")
            if name == "resnet50":
                note += " (keras.applications' convolutions have biases before batch norm)"
        s32 = harness.speedup(times, "plain", "cnnzoo float32")
        rows.append(harness.row(NAME, f"{name}: cnnzoo float32 vs plain Keras", summary=s32,
                                target=">= 0.98", met=harness.at_least(s32, 0.98),
                                context=context, note=note))
        sdef = harness.speedup(times, "plain", "cnnzoo default")
        amx = runtime.cpu_has_amx() and not runtime.accelerators()
        default_note = f"default = {choice['precision']}, jit={choice['jit']}"
        rows.append(harness.row(
            NAME, f"{name}: cnnzoo default vs plain Keras", summary=sdef,
            target=">= 2.5 (CPU with AMX)" if amx else None,
            met=harness.at_least(sdef, 2.5) if amx else None,
            context=default_note, note=note))
    return rows
