"""cnnzoo.layers.ReLU: Keras's results and gradients, from primitives."""

import inspect

import keras
import numpy as np
import pytest
from keras import ops

import cnnzoo.layers.relu as relu_module
from cnnzoo import verify
from cnnzoo.layers import ReLU
from tests.helpers import code_only

GRID = verify.RELU_GRID


def _grad(layer, x):
    return verify.grad_of_sum(layer, x)


@pytest.mark.multibackend
@pytest.mark.parametrize("config", GRID, ids=verify._relu_name)
def test_forward_and_gradient_equal_keras_float32(config):
    # Keras's results, but the definition at +-inf, +-0 and NaN (where Keras
    # before 3.15 differs from it).
    x = verify.relu_inputs("float32", 64)
    want = verify.relu_reference(x, ops.convert_to_numpy(keras.layers.ReLU(**config)(x)),
                                 **config)
    got = ops.convert_to_numpy(ReLU(**config)(x))
    same, _ = verify._same_bits(got, want)
    assert same.all(), (x[~same], got[~same], want[~same])
    g_want = _grad(keras.layers.ReLU(**config), x)
    g_got = _grad(ReLU(**config), x)
    same, _ = verify._same_bits(g_got, g_want, flush_equivalent=False)
    assert same.all(), (x[~same], g_got[~same], g_want[~same])


@pytest.mark.multibackend
def test_gradient_is_zero_at_the_kink_and_keras_convention_elsewhere():
    x = np.array([-1.0, 0.0, 1.0], dtype="float32")
    np.testing.assert_array_equal(_grad(ReLU(), x), [0.0, 0.0, 1.0])
    # Leaky: the slope below, 1 above; at 0 each backend has its convention.
    leaky_at_0 = _grad(keras.layers.ReLU(negative_slope=0.25), x)[1]
    np.testing.assert_array_equal(_grad(ReLU(negative_slope=0.25), x), [0.25, leaky_at_0, 1.0])
    # Unlike autodiff of maximum(x, 0), which splits the tie (0.5 on JAX) or
    # passes it (1 on TensorFlow).
    assert _grad(lambda t: ops.maximum(t, 0.0), x)[1] != 0.0


@pytest.mark.multibackend
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_bit_exact(dtype):
    x_np = verify.relu_inputs(dtype, 128)
    x = ops.convert_to_tensor(x_np)
    for config in GRID:
        got = ops.convert_to_numpy(ReLU(dtype=dtype, **config)(x))
        want = ops.convert_to_numpy(keras.layers.ReLU(dtype=dtype, **config)(x))
        assert got.dtype == want.dtype
        want = verify.relu_reference(x_np, want, **config)
        same, _ = verify._same_bits(got, want)
        assert same.all(), config


@pytest.mark.multibackend
@pytest.mark.parametrize("max_value, dtype", [(float("inf"), "float32"), (1e5, "float16")])
def test_an_infinite_max_value_keeps_infinite_inputs(max_value, dtype):
    # 1e5 is +inf in float16; the tie at max_value must not become inf - inf.
    x = np.array([np.inf, 7e4, 1e5, 3.0, -np.inf], "float32")
    got = ops.convert_to_numpy(ReLU(max_value=max_value, dtype=dtype)(x))
    want = ops.convert_to_numpy(keras.layers.ReLU(max_value=max_value, dtype=dtype)(x))
    np.testing.assert_array_equal(got, want)
    assert not np.isnan(got).any()


@pytest.mark.multibackend
@pytest.mark.parametrize("config", [{"max_value": 6.0}, {"max_value": 6.0, "negative_slope": 0.1},
                                    {"max_value": 1.5}])
def test_an_empty_batch_as_keras(config):
    # relu6's tie term went through Keras's TensorFlow `add`, whose bias-add
    # shortcut fails on (0, 5) + (0, 5).
    for shape in ((0, 5), (0, 5, 1)):
        x = np.zeros(shape, "float32")
        assert tuple(ReLU(**config)(x).shape) == tuple(keras.layers.ReLU(**config)(x).shape)


@pytest.mark.parametrize("config", [{}, {"max_value": 6.0}, {"max_value": 3.0},
                                    {"threshold": 1.0}])
def test_integer_inputs_keep_their_dtype_as_keras(config):
    x = np.arange(-4, 8, dtype="int32")
    got = ReLU(**config)(x)
    want = keras.layers.ReLU(**config)(x)
    assert keras.backend.standardize_dtype(got.dtype) == "int32"
    assert keras.backend.standardize_dtype(want.dtype) == "int32"
    np.testing.assert_array_equal(ops.convert_to_numpy(got), ops.convert_to_numpy(want))


@pytest.mark.multibackend
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_half(policy):
    keras.config.set_dtype_policy(policy)
    layer = ReLU(max_value=6.0)
    y = layer(np.array([[-1.0, 3.0, 9.0]], dtype="float32"))
    assert ops.convert_to_numpy(y).dtype.name == policy.split("_")[1]
    np.testing.assert_array_equal(ops.convert_to_numpy(ops.cast(y, "float32")), [[0, 3, 6]])


@pytest.mark.multibackend
def test_jit_compiled_training_step():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8)(inputs)
    x = ReLU(negative_slope=0.1, max_value=6.0)(x)
    outputs = keras.layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse", jit_compile=True)
    rng = np.random.default_rng(0)
    history = model.fit(rng.normal(size=(16, 4)), rng.normal(size=(16, 1)), epochs=2,
                        batch_size=8, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


def test_config_round_trip_and_safe_mode_reload(tmp_path):
    layer = ReLU(max_value=4.0, negative_slope=0.1, threshold=0.5, name="act")
    config = layer.get_config()
    assert {k: config[k] for k in ("max_value", "negative_slope", "threshold")} == {
        "max_value": 4.0, "negative_slope": 0.1, "threshold": 0.5}
    clone = ReLU.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, ReLU) and restored.get_config() == config

    inputs = keras.Input((3,))
    model = keras.Model(inputs, ReLU(max_value=4.0, negative_slope=0.1, name="act")(inputs))
    path = tmp_path / "relu.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("act"), ReLU)
    x = np.array([[-2.0, 1.0, 9.0]], dtype="float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("kwargs, name", [
    ({"max_value": -1.0}, "max_value"),
    ({"negative_slope": -0.1}, "negative_slope"),
    ({"threshold": -0.5}, "threshold"),
    ({"threshold": None}, "threshold"),
    ({"negative_slope": "a"}, "negative_slope"),
])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        ReLU(**kwargs)


def test_built_from_primitives_only():
    code = code_only(inspect.getsource(relu_module))
    for forbidden in ("ops.relu", "ops.maximum", "ops.minimum", "ops.clip", "leaky_relu",
                      "activations", "layers.ReLU", "keras.src", "tensorflow", "jax."):
        assert forbidden not in code, forbidden
