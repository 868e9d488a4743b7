"""Runtime defaults (precision, XLA) and bfloat16's accuracy on digits."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from cnnzoo import runtime


@pytest.fixture
def machine(monkeypatch):
    """Pretends to be a machine with the given CPU flags and accelerators."""

    def set_machine(flags=(), accelerators=(), capabilities=()):
        monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(runtime, "accelerators", lambda: tuple(accelerators))
        monkeypatch.setattr(runtime, "gpu_capabilities", lambda: tuple(capabilities))

    return set_machine


@pytest.mark.parametrize("flags, expected", [
    ({"avx512f", "amx_bf16", "amx_tile"}, "mixed_bfloat16"),
    ({"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
    ({"avx2", "avx512f"}, "float32"),
    ((), "float32"),
])
def test_auto_precision_on_cpus(machine, flags, expected):
    machine(flags=flags)
    assert runtime.resolve_precision("auto") == expected


@pytest.mark.parametrize("model, expected", [
    ("simple_cnn", "mixed_bfloat16"), ("vgg11_bn", "mixed_bfloat16"), ("resnet18", "mixed_bfloat16"),
    ("mobilenet_v2", "float32"), ("densenet121", "float32"),
])
def test_auto_precision_on_cpus_follows_the_family(machine, model, expected):
    machine(flags={"avx512f", "amx_bf16", "amx_tile"})
    assert runtime.resolve_precision("auto", model=model) == expected
    choice = runtime.resolve(model=model)
    assert choice["precision"] == expected
    if expected == "float32":
        assert "trains slower in bfloat16 on CPUs" in choice["reason"]
    # Asked for, bfloat16 it is; a GPU decides by its own units.
    assert runtime.resolve_precision("mixed_bfloat16", model=model) == "mixed_bfloat16"
    machine(flags=(), accelerators=[("gpu", "gpu0")], capabilities=[(9, 0)])
    assert runtime.resolve_precision("auto", model=model) == "mixed_bfloat16"
    with pytest.raises(ValueError, match="nope"):
        runtime.resolve_precision("auto", model="nope")


@pytest.mark.parametrize("capabilities, expected", [
    ([(9, 0)], "mixed_bfloat16"),          # Hopper
    ([(8, 0), (8, 6)], "mixed_bfloat16"),  # Ampere
    ([(7, 0)], "float32"),                 # Volta: no bfloat16 units
    ([(8, 0), (7, 5)], "float32"),         # every GPU must have them
    ([(0, 0)], "float32"),                 # unknown
])
def test_auto_precision_on_gpus(machine, capabilities, expected):
    # The CPU's units do not matter once there is a GPU.
    machine(flags={"amx_bf16"}, accelerators=[("gpu", f"gpu{i}") for i in range(len(capabilities))],
            capabilities=capabilities)
    assert runtime.resolve_precision() == expected


def test_explicit_precision_wins(machine):
    machine(flags=())
    for p in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert runtime.resolve_precision(p) == p


@pytest.mark.parametrize("bad", ["bfloat16", "fp32", None, 32, "AUTO"])
def test_bad_precision(bad):
    with pytest.raises(ValueError, match="Received: precision="):
        runtime.resolve_precision(bad)


def test_auto_jit_off_on_cpu_on_with_accelerators(machine, monkeypatch):
    monkeypatch.setattr(runtime, "backend", lambda: "tensorflow")
    machine()
    assert runtime.resolve_jit("auto") is False
    machine(accelerators=[("gpu", "gpu0")], capabilities=[(9, 0)])
    assert runtime.resolve_jit("auto") is True


def test_auto_jit_always_on_with_jax(machine, monkeypatch):
    # Without XLA, JAX runs op by op: no CPU exception there.
    monkeypatch.setattr(runtime, "backend", lambda: "jax")
    machine()
    assert runtime.resolve_jit("auto") is True
    assert "JAX" in runtime.resolve()["reason"]


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("on", True), ("off", False), ("TRUE", True), ("0", False),
])
def test_jit_overrides(machine, value, expected):
    machine(accelerators=[("gpu", "gpu0")])
    assert runtime.resolve_jit(value) is expected


@pytest.mark.parametrize("bad", [1, 0, None, "maybe", 0.0, "autox"])
def test_bad_jit(bad):
    with pytest.raises(ValueError, match="Received: jit="):
        runtime.resolve_jit(bad)


def test_configure_sets_the_policy_and_says_why(machine):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the CPU's XLA choice here is TensorFlow's")
    machine(flags={"amx_bf16"})
    choice = runtime.configure()
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert choice["precision"] == "mixed_bfloat16" and choice["jit"] is False
    assert choice["devices"] == ["cpu"]
    assert "AMX" in choice["reason"] and "XLA off" in choice["reason"]
    choice = runtime.configure("float32", jit="on")
    assert keras.config.dtype_policy().name == "float32"
    assert choice["jit"] is True and "(asked)" in choice["reason"]


def _counting_steps(model):
    traces = []
    step = model.train_step

    def counted(*args):  # (data) on TensorFlow, (state, data) on JAX
        traces.append(1)  # runs only while the step is traced
        return step(*args)

    model.train_step = counted
    return traces


@pytest.mark.multibackend
def test_prepare_training_traces_the_first_training_step_once():
    from cnnzoo import train

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    # The runtime's XLA choice: compiled steps on TensorFlow and JAX (JAX's
    # `jit_compile=False` runs op by op, and each call would count).
    assert train.compile_model(model, jit=runtime.resolve_jit("auto")) is model
    assert model.optimizer.built  # compile_model builds the optimizer
    slots = len(model.optimizer.variables)
    x, y = np.ones((8, 4), "float32"), np.zeros((8,), "int32")
    assert runtime.prepare_training(model, x, y) is model
    assert len(model.optimizer.variables) == slots  # built once
    traces = _counting_steps(model)
    for _ in range(3):
        model.train_on_batch(x, y)
    # Without it, TensorFlow traces twice: the first trace creates the
    # optimizer's and the metrics' variables, and a function that creates
    # variables is traced again. On torch the CPU default is no compilation
    # (`resolve_jit`): nothing is traced, and the step runs once per batch.
    assert len(traces) == (3 if keras.backend.backend() == "torch" else 1)
    # Uncompiled: nothing to build.
    bare = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    assert runtime.prepare_training(bare, x, y) is bare


_PRIMITIVE_SIMPLE_CNN = (
    lambda: __import__("cnnzoo").create_model(
        "simple_cnn", input_shape=(6, 6, 1), num_classes=3, dropout_rate=0.5,
        block_dropout_rate=0.3, implementation="primitive", tunable_dropout=True))


def _two_steps(build, prepare, x, y, seed=keras.utils.set_random_seed, seed_value=3):
    seed(seed_value)
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    if prepare:
        runtime.prepare_training(model, x, y)
    logs = [model.train_on_batch(x, y, return_dict=True) for _ in range(2)]
    return [keras.ops.convert_to_numpy(w) for w in model.variables], logs


def _tiny_batch():
    rng = np.random.default_rng(0)
    return (rng.uniform(0, 1, (8, 6, 6, 1)).astype("float32"),
            rng.integers(0, 3, 8).astype("int32"))


def _assert_same(run, other):
    """Two `_two_steps` results: the same logs and the same weights, exactly."""
    (weights, logs), (other_weights, other_logs) = run, other
    assert logs == other_logs
    assert len(weights) == len(other_weights)
    for a, b in zip(weights, other_weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.multibackend
@pytest.mark.parametrize("build", [
    lambda: keras.Sequential([
        keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.Dropout(0.5), keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax")]),
    _PRIMITIVE_SIMPLE_CNN,
], ids=["keras-bn-dropout", "cnnzoo-primitive-tunable"])
def test_prepare_training_changes_no_number(build):
    # The example goes through in inference mode: no dropout mask is drawn,
    # no batch-norm statistic moves, and the metrics start from zero.
    x, y = _tiny_batch()
    _assert_same(_two_steps(build, True, x, y), _two_steps(build, False, x, y))


@pytest.mark.multibackend
@pytest.mark.parametrize("build", [
    lambda: __import__("cnnzoo").create_model(
        "simple_cnn", input_shape=(6, 6, 1), num_classes=3, dropout_rate=0.5,
        block_dropout_rate=0.3, dropout_type="spatial"),
    _PRIMITIVE_SIMPLE_CNN,
], ids=["cnnzoo-keras-spatial", "cnnzoo-primitive-tunable"])
def test_seed_trial_seeds_as_keras_does(build):
    # The same initial weights and dropout masks as after Keras's own
    # set_random_seed, so the same weights and logs after two steps.
    x, y = _tiny_batch()
    ours = _two_steps(build, True, x, y, seed=runtime.seed_trial)
    _assert_same(ours, _two_steps(build, True, x, y))
    other, _ = _two_steps(build, True, x, y, seed=runtime.seed_trial, seed_value=4)
    assert any(not np.array_equal(a, b) for a, b in zip(ours[0], other))
    with pytest.raises(ValueError, match="Received: seed=-1"):
        runtime.seed_trial(-1)


def test_seed_trial_leaves_tensorflows_seed_and_caches_alone(monkeypatch):
    # `tf.random.set_seed` clears TensorFlow's compiled-function caches.
    import tensorflow as tf

    def set_seed(seed):
        raise AssertionError("tf.random.set_seed was called")

    monkeypatch.setattr(tf.random, "set_seed", set_seed)
    runtime.seed_trial(5)
    first = keras.ops.convert_to_numpy(_PRIMITIVE_SIMPLE_CNN().weights[0])
    runtime.seed_trial(5)
    again = keras.ops.convert_to_numpy(_PRIMITIVE_SIMPLE_CNN().weights[0])
    np.testing.assert_array_equal(first, again)
    # On another backend it does not import TensorFlow (Keras's own does).
    script = ("import sys\nfrom cnnzoo import runtime\nruntime.seed_trial(5)\n"
              "print('tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "KERAS_BACKEND": "jax"},
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


# -- bfloat16 keeps the accuracy ------------------------------------------------


@pytest.mark.slow
def test_mixed_bfloat16_keeps_digits_accuracy_within_noise():
    """bfloat16's final validation accuracy on digits against float32's.

    The issue's target is 0.5 points. With 539 validation images one image
    is 0.19 points, and two trainings that differ only in rounding disagree
    on a handful of images, so 0.5 points is about one or two standard
    errors of the gap: a test at exactly 0.5 points would fail by chance.
    The check is therefore: same seeds and data order for both precisions,
    two seeds averaged, and the mean gap within max(0.5 points, 3 paired
    (McNemar) standard errors). The benchmark (`cnnzoo bench --only
    precision`) reports the gap against the 0.5-point target itself.
    """
    from cnnzoo.bench import precision

    result = precision.compare(seeds=(0, 1), epochs=6)
    gap, se = precision.gap_and_se(result)
    # Both learned the task: the comparison is about a trained model.
    assert min(result["acc_float32"]) > 0.9 and min(result["acc_bfloat16"]) > 0.9
    assert abs(gap) <= max(0.005, 3 * se), (gap, se, result)


@pytest.mark.parametrize("step_flops, expected", [(22e6, 1), (49e6, 1), (50e6, None),
                                                  (1e9, None), (None, None)])
def test_auto_threads_one_for_tiny_steps_on_a_tensorflow_cpu(machine, step_flops, expected):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("threads are TensorFlow's")
    machine()
    assert runtime.resolve_threads("auto", step_flops) == expected
    assert runtime.resolve_threads(3, step_flops) == 3  # asked: whatever the size
    machine(accelerators=[("gpu", "gpu0")])
    assert runtime.resolve_threads("auto", step_flops) is None


def test_threads_auto_elsewhere_and_bad_values(machine, monkeypatch):
    machine()
    for bad in (0, -1, 1.5, True, "two", None):
        with pytest.raises(ValueError, match="Received: threads="):
            runtime.check_threads(bad)
    assert runtime.check_threads("2") == 2 and runtime.check_threads("AUTO") == "auto"
    monkeypatch.setattr(runtime, "backend", lambda: "jax")
    assert runtime.resolve_threads("auto", 1e6) is None
    with pytest.raises(ValueError, match="on the jax backend.*Received: threads=2"):
        runtime.resolve_threads(2)


def test_step_flops_counted_as_the_built_model_has_them():
    if keras.backend.backend() != "tensorflow":
        assert runtime.count_step_flops(lambda: None, 32) is None
        return

    # TensorFlow started in conftest: no choice is left, nothing is built.
    assert runtime.tensorflow_started()
    assert runtime.count_step_flops(lambda: 1 / 0, 32) is None
    script = ("from cnnzoo import _flops, runtime\n"
              "from cnnzoo.pipeline import build_classifier\n"
              "def build():\n"
              "    return build_classifier('simple_cnn', (8, 8, 1), 10)\n"
              "assert not runtime.tensorflow_started()\n"
              "counted = runtime.count_step_flops(build, 32)\n"
              "assert runtime.count_step_flops(lambda: 1 / 0, 32) is None\n"
              "assert not runtime.tensorflow_started()  # counting did not start it\n"
              "print(counted, 32 * _flops.forward_flops(build())[0])\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=False,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(32 * 694_784)] * 2


def test_threads_once_tensorflow_has_started(machine):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("threads are TensorFlow's")
    machine()  # TensorFlow started in conftest, with its default threads
    choice = runtime.configure("float32", threads="auto", step_flops=22e6)
    assert choice["threads"] is None and "it had started" in choice["reason"]
    with pytest.raises(ValueError, match="before TensorFlow starts.*Received: threads=2"):
        runtime.configure("float32", threads=2)


def test_a_fresh_process_sets_threads_before_tensorflow_starts(tmp_path):
    import json

    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    out = tmp_path / "search"
    result = subprocess.run(
        [sys.executable, "-m", "cnnzoo", "tune", "--max-trials", "1", "--epochs", "1",
         "--num-samples", "200", "--no-export", "--precision", "float32", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    # simple_cnn on digits: 694,784 FLOPs an image, 22 MFLOP a batch of 32.
    assert "| intra-op threads: 1" in result.stdout.splitlines()[0]
    assert json.loads((out / "results.json").read_text())["search"]["threads"] == 1

    script = ("from cnnzoo import runtime\n"
              "import tensorflow as tf\n"
              "choice = runtime.configure('float32', threads=2)\n"
              "print(choice['threads'], tf.config.threading.get_intra_op_parallelism_threads())\n"
              "tf.zeros(1) + 1  # started\n"
              "again = runtime.configure('float32')  # a later run: nothing to set, 2 in force\n"
              "print(again['threads'], 'set earlier in this process' in again['reason'])\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "2", "2", "True"]

    # `cnnzoo train` chooses as `cnnzoo tune` does, and records it.
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "cnnzoo", "train", "--epochs", "1", "--num-samples", "200",
         "--precision", "float32", "--verbose", "0", "--out", str(run)],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "run.json").read_text())["runtime"]["threads"] == 1
