"""cnnzoo.layers.Dropout and SpatialDropout2D: inverted dropout from primitives."""

import inspect
import math
import os

import keras
import numpy as np
import pytest
from keras import ops

import cnnzoo.layers.dropout as dropout_module
from cnnzoo import verify
from cnnzoo.layers import Dropout, SpatialDropout2D, VariableDropout
from tests.helpers import code_only


def _x(shape, seed=0, dtype="float32"):
    return verify._positive_inputs(shape, dtype, seed)


def _np(t):
    return np.asarray(ops.convert_to_numpy(t))


@pytest.mark.multibackend
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_inference_is_identity_bit_for_bit(dtype):
    x = verify.relu_inputs(dtype, 64).reshape(-1, 1)
    layer = Dropout(0.5, seed=1, dtype=dtype)
    for out in (layer(x), layer(x, training=False)):
        same, _ = verify._same_bits(_np(out), x, flush_equivalent=False)
        assert same.all()


@pytest.mark.multibackend
@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_training_drops_rate_and_scales_the_rest(rate):
    x = _x((200, 100))
    out = _np(Dropout(rate, seed=3)(x, training=True))
    dropped = float(np.mean(out == 0))
    se = math.sqrt(rate * (1 - rate) / x.size)
    assert abs(dropped - rate) < 4 * se
    kept = out != 0
    want = (x / np.float32(1 - rate)).astype("float32")
    # Correctly rounded on TensorFlow; XLA:CPU division may be 1 ulp off.
    ulps = verify._ulps(out[kept], want[kept])
    assert ulps <= verify.DIVISION_ULPS[keras.backend.backend()]


@pytest.mark.multibackend
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_mask_bit_identical_to_keras_for_the_same_seed(dtype):
    # Documented in cnnzoo.verify.MASKS_BIT_IDENTICAL: identical on TF and JAX.
    assert verify.MASKS_BIT_IDENTICAL[keras.backend.backend()]
    x = _x((64, 64), dtype=dtype)
    ours, theirs = Dropout(0.3, seed=5, dtype=dtype), keras.layers.Dropout(0.3, seed=5, dtype=dtype)
    for _ in range(2):
        np.testing.assert_array_equal(_np(ours(x, training=True)) != 0,
                                      _np(theirs(x, training=True)) != 0)


@pytest.mark.multibackend
def test_same_seed_same_mask_other_seed_other_mask():
    x = _x((64, 64))
    a = _np(Dropout(0.5, seed=1)(x, training=True))
    b = _np(Dropout(0.5, seed=1)(x, training=True))
    c = _np(Dropout(0.5, seed=2)(x, training=True))
    np.testing.assert_array_equal(a, b)
    # Independent masks agree on half the elements (4 binomial SEs).
    agree = float(np.mean((a != 0) == (c != 0)))
    assert abs(agree - 0.5) < 4 * math.sqrt(0.25 / a.size)


@pytest.mark.multibackend
def test_rate_zero_and_one():
    x = _x((8, 8))
    np.testing.assert_array_equal(_np(Dropout(0.0)(x, training=True)), x)
    np.testing.assert_array_equal(_np(Dropout(1.0, seed=1)(x, training=True)), np.zeros_like(x))


@pytest.mark.multibackend
def test_noise_shape_broadcasts():
    x = _x((16, 10, 12))
    out = _np(Dropout(0.5, noise_shape=(None, 1, 12), seed=4)(x, training=True))
    kept = out != 0
    np.testing.assert_array_equal(kept.any(axis=1), kept.all(axis=1))
    want = _np(keras.layers.Dropout(0.5, noise_shape=(None, 1, 12), seed=4)(x, training=True))
    np.testing.assert_array_equal(kept, want != 0)


@pytest.mark.multibackend
@pytest.mark.parametrize("data_format, axes", [("channels_last", (1, 2)),
                                               ("channels_first", (2, 3))])
def test_spatial_dropout_drops_whole_maps(data_format, axes):
    x = _x((8, 5, 5, 16) if data_format == "channels_last" else (8, 16, 5, 5))
    layer = SpatialDropout2D(0.5, data_format=data_format, seed=2)
    out = _np(layer(x, training=True))
    kept = out != 0
    np.testing.assert_array_equal(kept.any(axis=axes), kept.all(axis=axes))
    assert 0 < kept.mean() < 1
    want = _np(keras.layers.SpatialDropout2D(0.5, data_format=data_format, seed=2)(
        x, training=True))
    np.testing.assert_array_equal(kept, want != 0)
    np.testing.assert_array_equal(_np(layer(x)), x)


@pytest.mark.multibackend
def test_gradient_is_mask_over_keep_probability():
    layer = Dropout(0.25, seed=6)
    out, grad = verify._stateless_output_and_grad(layer, _x((16, 16)))
    want = np.where(out != 0, np.float32(1) / np.float32(0.75), 0).astype("float32")
    np.testing.assert_array_equal(grad, want)


@pytest.mark.multibackend
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    layer = Dropout(0.5, seed=1)
    out = layer(_x((32, 32)), training=True)
    assert _np(out).dtype.name == policy.split("_")[1]
    frac = float(np.mean(_np(ops.cast(out, "float32")) == 0))
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / 1024)


@pytest.mark.multibackend
def test_jit_compiled_training_uses_dropout():
    inputs = keras.Input((6, 6, 2))
    x = SpatialDropout2D(0.3, seed=1)(inputs)
    x = keras.layers.Flatten()(x)
    x = Dropout(0.3, seed=2)(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile("sgd", "mse", jit_compile=True)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    history = model.fit(xs, rng.normal(size=(16, 1)), epochs=2, batch_size=8, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    # Inference is deterministic: no dropout there.
    np.testing.assert_array_equal(model.predict(xs, verbose=0), model.predict(xs, verbose=0))


def test_config_round_trip_and_safe_mode_reload(tmp_path):
    layer = Dropout(0.3, noise_shape=(None, 1, 4), seed=3, name="drop")
    config = layer.get_config()
    assert config["rate"] == 0.3 and config["seed"] == 3 and config["noise_shape"] == (None, 1, 4)
    assert Dropout.from_config(config).get_config() == config
    spatial = SpatialDropout2D(0.2, seed=1, name="sdrop")
    sconfig = spatial.get_config()
    assert sconfig["data_format"] == "channels_last" and "noise_shape" not in sconfig
    assert SpatialDropout2D.from_config(sconfig).get_config() == sconfig

    inputs = keras.Input((4, 4, 3))
    x = SpatialDropout2D(0.2, seed=1, name="sdrop")(inputs)
    x = keras.layers.Flatten()(x)
    x = Dropout(0.3, seed=3, name="drop")(x)
    model = keras.Model(inputs, x)
    path = tmp_path / "dropout.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("drop"), Dropout)
    assert isinstance(loaded.get_layer("sdrop"), SpatialDropout2D)
    xs = _x((2, 4, 4, 3))
    np.testing.assert_array_equal(loaded.predict(xs, verbose=0), xs.reshape(2, -1))


@pytest.mark.parametrize("cls, kwargs, name", [
    (Dropout, {"rate": 1.5}, "rate"),
    (Dropout, {"rate": -0.1}, "rate"),
    (Dropout, {"rate": "0.5"}, "rate"),
    (Dropout, {"rate": 0.5, "seed": 1.5}, "seed"),
    (Dropout, {"rate": 0.5, "noise_shape": "abc"}, "noise_shape"),
    (Dropout, {"rate": 0.5, "noise_shape": (None, 0)}, "noise_shape"),
    (SpatialDropout2D, {"rate": 0.5, "data_format": "channels_middle"}, "data_format"),
    (SpatialDropout2D, {"rate": 0.5, "noise_shape": (1, 1, 1, 1)}, "noise_shape"),
])
def test_invalid_arguments(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        cls(**kwargs)


def test_a_bad_data_format_is_named_as_given():
    with pytest.raises(ValueError, match="Received: data_format='Channels_Middle'"):
        SpatialDropout2D(0.5, data_format="Channels_Middle")


@pytest.mark.multibackend
@pytest.mark.parametrize("layer", [Dropout(0.5, seed=1), SpatialDropout2D(0.5, seed=1),
                                   VariableDropout(0.3, seed=1)])
def test_integer_inputs_are_refused_as_keras_does(layer):
    # 1 - rate in int32 is 0: the kept values would be x / 0.
    with pytest.raises(ValueError, match="Received: inputs.dtype='int32'"):
        layer(np.ones((2, 3, 3, 2), "int32"), training=True)


def test_spatial_dropout_data_format_is_case_insensitive_as_keras():
    layer = SpatialDropout2D(0.5, data_format="CHANNELS_FIRST")
    assert layer.data_format == keras.layers.SpatialDropout2D(
        0.5, data_format="CHANNELS_FIRST").data_format == "channels_first"


def test_built_from_primitives_only():

    code = code_only(inspect.getsource(dropout_module))
    for forbidden in ("random.dropout", "layers.Dropout", "layers.SpatialDropout",
                      "keras.src", "tensorflow", "jax."):
        assert forbidden not in code, forbidden
    assert "keras.random.uniform" in code


def test_masks_equal_keras_on_jax_with_x64():
    # jax.random.bernoulli draws in float64 under jax_enable_x64: a float32
    # draw disagreed with Keras's mask on half of the units.
    import subprocess
    import sys

    script = (
        "import numpy as np, keras, cnnzoo.layers as L\n"
        "x = np.ones((4, 3, 3, 50), 'float32')\n"
        "for mine, ref in ((L.Dropout(0.5, seed=7), keras.layers.Dropout(0.5, seed=7)),\n"
        "                  (L.SpatialDropout2D(0.3, seed=7),\n"
        "                   keras.layers.SpatialDropout2D(0.3, seed=7))):\n"
        "    a = np.asarray(mine(x, training=True))\n"
        "    b = np.asarray(ref(x, training=True))\n"
        "    print(np.array_equal(a, b))\n")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_ENABLE_X64="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]
