"""Devices, precision and XLA: the fast defaults, resolved once per run.

`configure(precision="auto", jit="auto")` is what `cnnzoo train`, `cnnzoo
tune` and the benchmarks call before building models. It reports what it
chose and why, so a run can print and record it.

The defaults come from measurements (see `benchmarks/RESULTS.md`):

- Precision: mixed bfloat16 where the hardware multiplies bfloat16 in
  hardware: CPUs with AMX or AVX-512 BF16, and GPUs of compute capability
  8.0 or newer (Ampere, Hopper). Elsewhere bfloat16 is emulated and slower
  than float32, so float32; on CPUs also for the model families that
  train slower in bfloat16 there (MobileNetV2, DenseNet). The final
  validation accuracy on `digits` with mixed bfloat16 is checked against
  float32 by `tests/test_runtime.py`.
- XLA (`jit_compile`): off for TensorFlow on the CPU, where it is far
  slower than TensorFlow's oneDNN kernels (see `cnnzoo bench --only
  implementation`); on for accelerators; always on for JAX, whose only
  alternative to XLA is running op by op (several times slower).
- Threads (`threads`, TensorFlow on a CPU): one intra-op thread for models
  whose training step is tiny (`SMALL_STEP_FLOPS`), TensorFlow's default
  (one per core) otherwise. Set before TensorFlow starts, or not at all.
"""

import contextlib
import functools
import os

from cnnzoo import _validation as v

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_CHOICES = ("auto", True, False)
# Spellings `--jit` accepts on the command line.
_JIT_WORDS = {"auto": "auto", "on": True, "true": True, "1": True, "yes": True, "xla": True,
              "off": False, "false": False, "0": False, "no": False}


@functools.lru_cache(maxsize=None)
def cpu_flags():
    """The CPU's feature flags (empty where /proc/cpuinfo is unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx():
    """True on CPUs with AMX bfloat16 tiles (Sapphire Rapids and newer)."""
    return "amx_bf16" in cpu_flags()


def cpu_has_fast_bf16():
    """True on CPUs with AMX or AVX-512 BF16 units (bfloat16 matmuls in hardware)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def backend():
    """The Keras backend's name."""
    import keras

    return keras.backend.backend()


@functools.lru_cache(maxsize=None)
def accelerators():
    """Accelerator devices of the current backend, as `(kind, name)` pairs."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tuple(("gpu", d.name) for d in tf.config.list_physical_devices("GPU"))
    if name == "jax":
        import jax

        return tuple((d.platform, str(d)) for d in jax.devices() if d.platform != "cpu")
    if name == "torch":
        import torch

        if torch.cuda.is_available():
            return tuple(("gpu", torch.cuda.get_device_name(i))
                         for i in range(torch.cuda.device_count()))
    return ()


def _capability(text):
    """`"8.6"` or `(8, 6)` -> `(8, 6)`; `(0, 0)` when unknown."""
    if isinstance(text, (tuple, list)) and len(text) >= 2:
        return int(text[0]), int(text[1])
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (TypeError, ValueError):
        return (0, 0)


@functools.lru_cache(maxsize=None)
def gpu_capabilities():
    """Compute capabilities `(major, minor)` of the backend's NVIDIA GPUs ((0, 0): unknown)."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tuple(_capability(tf.config.experimental.get_device_details(d)
                                 .get("compute_capability"))
                     for d in tf.config.list_physical_devices("GPU"))
    if name == "jax":
        import jax

        return tuple(_capability(getattr(d, "compute_capability", None))
                     for d in jax.devices() if d.platform == "gpu")
    if name == "torch":
        import torch

        if torch.cuda.is_available():
            return tuple(torch.cuda.get_device_capability(i)
                         for i in range(torch.cuda.device_count()))
    return ()


def gpu_has_fast_bf16():
    """True when every GPU runs bfloat16 in hardware (compute capability 8.0 or newer)."""
    caps = gpu_capabilities()
    return bool(caps) and all(c >= (8, 0) for c in caps)


def _cpu_mixed_bfloat16(model):
    # Whether the model's family trains faster in mixed bfloat16 on CPUs
    # with bfloat16 units: declared where it registers (`cpu_mixed_bfloat16`).
    if model is None:
        return True
    import cnnzoo

    return cnnzoo.model_info(model)["cpu_mixed_bfloat16"]


def resolve_precision(precision="auto", model=None):
    """Returns the dtype policy name that `precision` stands for.

    Args:
        precision: `"auto"`, `"float32"`, `"mixed_bfloat16"` or
            `"mixed_float16"`. `"auto"` is mixed bfloat16 where the
            hardware runs it fast (AMX / AVX-512 BF16 CPUs, GPUs of compute
            capability >= 8.0) and float32 elsewhere; on CPUs also float32
            for the zoo families that train slower in bfloat16 there
            (`model_info(model)["cpu_mixed_bfloat16"]` is `False`).
        model: optional zoo model name that will train.
    """
    v.check_choice("precision", precision, PRECISIONS)
    cpu_bf16 = _cpu_mixed_bfloat16(model)  # checks the name
    if precision != "auto":
        return precision
    if accelerators():
        return "mixed_bfloat16" if gpu_has_fast_bf16() else "float32"
    if not cpu_has_fast_bf16() or not cpu_bf16:
        return "float32"
    return "mixed_bfloat16"


def parse_jit(value):
    """Parses a `--jit` value: `auto`, `on`/`true`/`1`, `off`/`false`/`0`.

    Booleans and `"auto"` pass through, so it is safe on any input.
    """
    if isinstance(value, bool) or value == "auto":
        return value
    if isinstance(value, str) and value.strip().lower() in _JIT_WORDS:
        return _JIT_WORDS[value.strip().lower()]
    v.fail("Expected `jit` to be 'auto', 'on' or 'off'.", "jit", value)


def resolve_jit(jit="auto"):
    """Returns whether to compile with XLA.

    Args:
        jit: `"auto"`, `True` or `False` (or a `--jit` word, see
            `parse_jit`). `"auto"` is XLA on accelerators and with JAX, and
            off for TensorFlow and PyTorch on the CPU (TensorFlow's XLA
            is far slower there than its oneDNN kernels).
    """
    if isinstance(jit, str):
        jit = parse_jit(jit)
    if jit not in JIT_CHOICES or not isinstance(jit, (bool, str)):
        v.fail("Expected `jit` to be 'auto', True or False.", "jit", jit)
    if jit == "auto":
        return bool(accelerators()) or backend() == "jax"
    return jit


def resolve(precision="auto", jit="auto", model=None):
    """What `configure` would choose, without changing anything.

    Args:
        precision: see `resolve_precision`.
        jit: see `resolve_jit`.
        model: optional zoo model name that will train (see
            `resolve_precision`).

    Returns:
        A dict: `backend`, `devices` (accelerator names, `["cpu"]` on a
        CPU), `precision` (the dtype policy), `jit` (for `model.compile`)
        and `reason` (why, in words).
    """
    policy = resolve_precision(precision, model)
    use_jit = resolve_jit(jit)
    devices = [n for _, n in accelerators()]
    if precision == "auto":
        if devices:
            why = ("GPUs of compute capability >= 8.0 run bfloat16 in hardware"
                   if policy != "float32" else "GPU without fast bfloat16")
        elif policy != "float32":
            why = "CPU with AMX / AVX-512 BF16"
        elif cpu_has_fast_bf16():
            import cnnzoo

            why = (f"the {cnnzoo.model_info(model)['family']} family trains slower in "
                   f"bfloat16 on CPUs")
        else:
            why = "CPU without bfloat16 units"
        why = f"precision auto -> {policy} ({why})"
    else:
        why = f"precision {policy} (asked)"
    if jit != "auto":
        jit_why = "asked"
    elif devices:
        jit_why = "accelerator"
    else:
        jit_why = "JAX runs op by op without it" if backend() == "jax" else "CPU"
    return {
        "backend": backend(),
        "devices": devices or ["cpu"],
        "precision": policy,
        "jit": use_jit,
        "reason": f"{why}; XLA {'on' if use_jit else 'off'} ({jit_why})",
    }


def setup_devices():
    """Lets trials share a GPU: TensorFlow memory growth, no JAX preallocation."""
    if backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialized
                pass
    elif backend() == "jax":
        # Only effective before JAX starts its GPU client; harmless after.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


# Forward FLOPs of one training batch below which TensorFlow on a CPU trains
# faster with one intra-op thread than with its default of one per core: a
# step this small is mostly TensorFlow's per-op overhead, and splitting each
# small op over the cores costs more than it saves. The threshold lies between
# the sizes where one thread wins (simple_cnn on digits, LeNet-5 at 32x32) and
# those where neither or the default does (the measurements:
# `benchmarks/README.md`, "One intra-op thread for tiny models").
SMALL_STEP_FLOPS = 50e6


def check_threads(threads):
    """`threads` as `configure` takes it: `"auto"` or an int >= 1."""
    if isinstance(threads, str) and threads.strip().lower() == "auto":
        return "auto"
    if isinstance(threads, str) and threads.strip().isdigit():
        threads = int(threads)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        v.fail("Expected `threads` to be 'auto' or an integer >= 1.", "threads", threads)
    return threads


def resolve_threads(threads="auto", step_flops=None):
    """TensorFlow's intra-op threads for a run: an int, or `None` for its default.

    Args:
        threads: `"auto"` or an int >= 1 (TensorFlow only). `"auto"` is 1
            for TensorFlow on a CPU when one training batch's forward pass
            costs under `SMALL_STEP_FLOPS`, and TensorFlow's default (one
            thread per core) otherwise, on accelerators and on other
            backends.
        step_flops: forward FLOPs of one training batch, where known
            (`count_step_flops`).
    """
    threads = check_threads(threads)
    if threads != "auto":
        if backend() != "tensorflow":
            v.fail("Expected `threads` to be 'auto' on the " + backend() + " backend: it sets "
                   "TensorFlow's intra-op threads.", "threads", threads)
        return threads
    if backend() != "tensorflow" or accelerators() or not step_flops:
        return None
    return 1 if step_flops < SMALL_STEP_FLOPS else None


def count_step_flops(build, batch_size):
    """Forward FLOPs of one batch of the model `build()` returns (`None`: unknown).

    On TensorFlow the model is built in a throwaway graph, which does not
    start TensorFlow's runtime: its threads can still be set afterwards.
    Elsewhere, and once TensorFlow has started (no choice is left then),
    nothing is built and the answer is `None`.
    """
    if backend() != "tensorflow" or tensorflow_started():
        return None
    import tensorflow as tf

    from cnnzoo import _flops

    try:
        with tf.Graph().as_default():
            flops = _flops.forward_flops(build())[0]
    except Exception:  # noqa: BLE001  (a model the counter cannot read: no choice made)
        return None
    return flops * batch_size if flops else None


def tensorflow_started():
    """Whether TensorFlow's runtime has started in this process (its threads are fixed then)."""
    import tensorflow as tf

    current = tf.config.threading.get_intra_op_parallelism_threads()
    try:  # a change is refused once it has started; put back at once otherwise
        tf.config.threading.set_intra_op_parallelism_threads(2 if current == 1 else 1)
    except RuntimeError:
        return True
    tf.config.threading.set_intra_op_parallelism_threads(current)
    return False


def _set_threads(threads):
    """Sets TensorFlow's intra-op threads; `False` where it has started already."""
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow has started: fixed for this process
        return False
    return True


def _threads_in_force():
    """TensorFlow's intra-op threads as set in this process (`None`: its default)."""
    if backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or None


def configure(precision="auto", jit="auto", model=None, threads="auto", step_flops=None):
    """Sets the global dtype policy (and threads) and returns what the run will use.

    Takes the arguments of `resolve`, and `threads` and `step_flops` of
    `resolve_threads`, and returns `resolve`'s dict, whose `precision` is
    now the global dtype policy, with `threads`: the intra-op threads in
    force (`None`: TensorFlow's default). `"auto"` leaves them as they are
    where TensorFlow has already started in this process (an earlier run may
    have set them); an asked number there is a `ValueError`.

    Example:

    >>> choice = configure()            # doctest: +SKIP
    >>> model.compile(..., jit_compile=choice["jit"])  # doctest: +SKIP
    """
    import keras

    wanted = resolve_threads(threads, step_flops)
    setup_devices()
    choice = resolve(precision, jit, model)
    keras.config.set_dtype_policy(choice["precision"])
    if wanted is not None:
        if _set_threads(wanted):
            why = "asked" if threads != "auto" else (
                f"a training batch of {step_flops / 1e6:.0f} MFLOP: small ops run faster "
                f"on one thread each")
            choice["reason"] += f"; intra-op threads {wanted} ({why})"
        elif threads != "auto":
            v.fail("Expected `threads` to be set before TensorFlow starts; it has started in "
                   "this process.", "threads", threads)
        else:
            choice["reason"] += ("; intra-op threads: TensorFlow's default (it had started "
                                 "before they could be set to 1)")
    # What is in force: as set here, by an earlier run in this process, or the default.
    choice["threads"] = _threads_in_force()
    if wanted is None and choice["threads"] is not None:
        choice["reason"] += f"; intra-op threads {choice['threads']} (set earlier in this process)"
    return choice


@contextlib.contextmanager
def dtype_policy(policy):
    """Within the block, `policy` is Keras's global dtype policy; the previous one after."""
    import keras

    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def clear_session(free_memory=True):
    """`keras.backend.clear_session()`, keeping the global dtype policy.

    Keras's resets the policy to float32 along with the rest of its global
    state, which would quietly undo `configure`'s precision for every model
    built after it.

    Args:
        free_memory: also run Python's garbage collection (Keras's own
            argument; where a Keras always collects, it does).
    """
    import keras

    with dtype_policy(keras.config.dtype_policy()):
        try:
            keras.backend.clear_session(free_memory=free_memory)
        except TypeError:  # a Keras whose clear_session takes no argument
            keras.backend.clear_session()


def seed_trial(seed):
    """Seeds a model's build and training: Python's and NumPy's generators.

    Unlike `keras.utils.set_random_seed`, it leaves TensorFlow's global seed
    alone. Setting that (`tf.random.set_seed`) also clears the eager
    context's kernel cache, so every compiled function is instantiated and
    optimized again at its next call. A search seeds each trial and trains
    its trials on one compiled model (`tuning.reuse`), so clearing that
    cache would make every trial pay for instantiating the training and
    test steps again. On other backends Keras's own would import
    TensorFlow (seconds) where it is installed.

    Keras's layers and initializers draw their default seeds from Python's
    `random` and their random numbers from their own
    `keras.random.SeedGenerator`s; `cnnzoo.input_pipeline` shuffles with
    explicit seeds. So the same seed builds and trains a cnnzoo model
    exactly as after `keras.utils.set_random_seed` (tested). Left as they
    are: TensorFlow ops called without a seed; `keras.random` calls without
    one (Keras's global generator goes on from where it was); and, on
    TensorFlow, `fit`'s own shuffling of arrays (`tf.random.shuffle`), so
    where `fit` gets arrays, seed with Keras's own. On the torch backend,
    torch's global seed is set too.

    Args:
        seed: a non-negative integer.
    """
    import random

    import keras
    import numpy as np

    seed = v.check_int("seed", seed, low=0)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def prepare_training(model, x=None, y=None):
    """Creates the state a compiled model's first training step would create.

    On TensorFlow without a distribution strategy, Keras creates the
    optimizer's slots and the compiled loss's and metrics' variables inside
    the first traced training step, and a `tf.function` that creates
    variables is traced a second time. Created here first, the step is
    traced once, which makes a model's first training step markedly
    shorter (the measurement: `benchmarks/README.md`, "The first training
    step is traced once"). Other backends build this state before tracing
    anyway: there only the optimizer is built (an eager forward pass would
    cost, not save, time).

    Args:
        model: a compiled model.
        x, y: a batch of training examples and labels (as `fit` gets them;
            only the first example is used), from which the loss and the
            metrics take their form. Without them only the optimizer is built.

    Returns:
        The model. Weights, random-seed states and batch-norm statistics are
        left as they were (the example goes through in inference mode), and
        the metrics are reset.
    """
    import contextlib

    import keras

    if not model.compiled:
        return model
    # Under the model's distribution strategy (TensorFlow), as Keras builds.
    strategy = getattr(model, "distribute_strategy", None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        if x is None or y is None or keras.backend.backend() != "tensorflow":
            return model
        x, y = keras.tree.map_structure(lambda a: a[:1], (x, y))
        y_pred = model(x, training=False)
        model.compute_loss(x, y, y_pred)
        model.compute_metrics(x, y, y_pred, sample_weight=None)
    model.reset_metrics()
    return model
