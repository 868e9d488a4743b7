"""Devices, precision and XLA: the fast defaults, resolved once per run.

`configure(precision="auto", jit="auto")` is what `cnnzoo train`, `cnnzoo
tune` and the benchmarks call before building models. It reports what it
chose, so a run can print and record it.
"""

import functools
import os

from cnnzoo import _validation as v

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_CHOICES = ("auto", True, False)


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


def cpu_has_fast_bf16():
    """True on CPUs with AMX or AVX-512 BF16 units (bfloat16 matmuls in hardware)."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def backend():
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


def gpu_has_fast_bf16():
    """True when every GPU can run bfloat16 fast (compute capability 8.0 or newer)."""
    gpus = accelerators()
    if not gpus:
        return False
    if backend() == "tensorflow":
        import tensorflow as tf

        for _, dev_name in gpus:
            device = [d for d in tf.config.list_physical_devices("GPU") if d.name == dev_name]
            details = tf.config.experimental.get_device_details(device[0]) if device else {}
            if details.get("compute_capability", (0, 0)) < (8, 0):
                return False
        return True
    # JAX and torch machines lent to this project are Hopper/Ampere class.
    return True


def resolve_precision(precision="auto"):
    """`"auto"` -> `"mixed_bfloat16"` where the hardware runs it fast, else `"float32"`."""
    v.check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    if accelerators():
        return "mixed_bfloat16" if gpu_has_fast_bf16() else "float32"
    return "mixed_bfloat16" if cpu_has_fast_bf16() else "float32"


def resolve_jit(jit="auto"):
    """`"auto"` -> XLA on accelerators, off on the CPU (measured 1.5x-2.7x slower here)."""
    if jit not in JIT_CHOICES or isinstance(jit, int) and not isinstance(jit, bool):
        v.fail("Expected `jit` to be 'auto', True or False.", "jit", jit)
    if jit == "auto":
        return bool(accelerators())
    return jit


def setup_devices():
    """Enables TensorFlow GPU memory growth, so trials share the GPU politely."""
    if backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialized
                pass
    elif backend() == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def configure(precision="auto", jit="auto"):
    """Sets the global dtype policy and returns what the run will use.

    Returns:
        A dict: `backend`, `devices` (accelerator names, empty on CPU),
        `precision` (the policy set) and `jit` (for `model.compile`).
    """
    import keras

    setup_devices()
    policy = resolve_precision(precision)
    keras.config.set_dtype_policy(policy)
    return {
        "backend": backend(),
        "devices": [n for _, n in accelerators()] or ["cpu"],
        "precision": policy,
        "jit": resolve_jit(jit),
    }
