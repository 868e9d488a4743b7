"""cnnzoo.layers.VariableDropout: dropout whose rate and kind are read when the step runs."""

import math

import keras
import numpy as np
import pytest
from keras import ops

import cnnzoo
from cnnzoo import verify
from cnnzoo.layers import VariableDropout


def _np(t):
    return np.asarray(ops.convert_to_numpy(t))


def _x(shape, dtype="float32"):
    return verify._positive_inputs(shape, dtype, 0)


def _dropped(out, rate, n):
    """The dropped fraction and its binomial standard error at `rate`."""
    return float(np.mean(out == 0)), math.sqrt(rate * (1 - rate) / n)


@pytest.mark.multibackend
@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_training_drops_rate_and_scales_the_rest(rate):
    x = _x((200, 100))
    out = _np(VariableDropout(rate, seed=3)(x, training=True))
    dropped, se = _dropped(out, rate, x.size)
    assert abs(dropped - rate) < 4 * se
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-6)


@pytest.mark.multibackend
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_rate_zero_and_inference_are_the_identity_bit_for_bit(dtype):
    x = _x((32, 4, 4, 8), dtype=dtype)
    zero = VariableDropout(0.0, spatial=True, seed=1, dtype=dtype)
    half = VariableDropout(0.5, seed=1, dtype=dtype)
    for out in (zero(x, training=True), half(x), half(x, training=False)):
        assert _np(out).tobytes() == _np(x).tobytes()


@pytest.mark.multibackend
def test_a_new_rate_and_kind_reach_an_already_compiled_step():
    # One compiled function; the layer's variables change between its calls.
    # A rate baked into the graph as a constant would leave the output as it was.
    layer = VariableDropout(0.0, seed=2)
    model = keras.Sequential([keras.Input((6, 6, 16)), layer])
    x = _x((64, 6, 6, 16))
    call = _compiled_training_call(model)
    outputs = []
    for rate, spatial in [(0.0, False), (0.5, False), (0.5, True), (0.1, False)]:
        layer.rate, layer.spatial = rate, spatial
        outputs.append((rate, spatial, _np(call(x))))
    for rate, spatial, out in outputs:
        if spatial:
            maps = out.reshape(64, 36, 16)
            # Whole feature maps: every pixel of a map dropped or none.
            assert np.all((maps == 0).all(axis=1) | (maps != 0).all(axis=1))
            dropped, se = _dropped((maps == 0).all(axis=1), rate, 64 * 16)
        else:
            dropped, se = _dropped(out, rate, out.size)
        if rate == 0:
            assert dropped == 0
        else:
            assert abs(dropped - rate) < 4 * se, (rate, spatial, dropped)


@pytest.mark.multibackend
def test_the_random_stream_advances_once_per_call_whatever_the_values():
    # Noise is drawn only where needed (none at rate 0, per map in the
    # spatial kind), but the seed is taken on every call: what a layer drops
    # later does not depend on the values it had before.
    x = _x((8, 4, 4, 8))
    layers = [VariableDropout(rate, spatial=spatial, seed=5)
              for rate, spatial in [(0.0, False), (0.5, True), (0.3, False)]]
    for layer in layers:
        layer(x, training=True)
        layer.rate, layer.spatial = 0.4, False
    later = [_np(layer(x, training=True)) for layer in layers]
    states = [_np(layer.seed_generator.state) for layer in layers]
    for out, state in zip(later[1:], states[1:]):
        assert out.tobytes() == later[0].tobytes()
        np.testing.assert_array_equal(state, states[0])
    assert 0 < (later[0] == 0).mean() < 1


@pytest.mark.multibackend
def test_eager_calls_branch_in_python_and_run_only_one_side():
    # Eager JAX would compile a fresh lax.cond on every call.
    from cnnzoo.layers.variable_dropout import _cond

    called = []
    out = _cond(keras.ops.greater(keras.ops.convert_to_tensor(0.5), 0.0),
                lambda: called.append("true") or "kept", lambda: called.append("false"))
    assert out == "kept" and called == ["true"]


@pytest.mark.multibackend
@pytest.mark.parametrize("rate, spatial", [(0.0, False), (0.4, False), (0.4, True)])
def test_compiled_and_eager_training_steps_agree(rate, spatial):
    # Compiled, the branches are a real cond (tf.cond, lax.cond under jit) with
    # its gradient; eagerly, a Python branch. Same seeds: the same training.
    x = _x((8, 4, 4, 3))
    y = _x((8, 2))

    def train(eager):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((4, 4, 3)), keras.layers.Conv2D(4, 1),
            VariableDropout(rate, spatial=spatial, seed=1), keras.layers.Flatten(),
            keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse", run_eagerly=eager,
                      jit_compile=False if eager else "auto")
        for _ in range(2):
            model.train_on_batch(x, y)
        return model.get_weights()

    for a, b in zip(train(eager=True), train(eager=False)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _compiled_training_call(model):
    """`model(x, training=True)` through one compiled function (traced once)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda t: model(t, training=True))
    if backend == "jax":
        import jax

        def pure(trainable, non_trainable, t):
            out, _ = model.stateless_call(trainable, non_trainable, t, training=True)
            return out

        jitted = jax.jit(pure)

        def fn(t):
            return jitted([v.value for v in model.trainable_variables],
                          [v.value for v in model.non_trainable_variables], t)

        return fn
    return lambda t: model(t, training=True)  # other backends run eagerly


@pytest.mark.multibackend
def test_gradient_is_mask_over_keep_probability():
    x = _x((16, 16))
    layer = VariableDropout(0.25, seed=6)
    layer(x)  # builds the rate variable
    out, grad = verify._stateless_output_and_grad(layer, x)
    want = np.where(out != 0, np.float32(1) / np.float32(0.75), 0).astype("float32")
    np.testing.assert_array_equal(grad, want)


def test_rate_is_stored_in_float32_and_reported_as_given():
    layer = VariableDropout(0.3)
    layer.build((None, 4))
    assert layer.rate == 0.3 and not layer.spatial
    layer.rate = 0.123457
    assert layer.rate == 0.123457
    with pytest.raises(ValueError, match="Received: rate=1.5"):
        layer.rate = 1.5


@pytest.mark.multibackend
def test_mixed_bfloat16_keeps_the_rate_in_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layer = VariableDropout(0.3, seed=1)
        out = layer(_x((64, 64)), training=True)
    finally:
        keras.config.set_dtype_policy("float32")
    assert _np(out).dtype.name == "bfloat16"
    assert layer.non_trainable_variables[0].dtype == "float32" and layer.rate == 0.3
    dropped, se = _dropped(_np(ops.cast(out, "float32")), 0.3, 64 * 64)
    assert abs(dropped - 0.3) < 4 * se


def test_config_round_trip(tmp_path):
    model = cnnzoo.create_model("simple_cnn", input_shape=(8, 8, 1), num_classes=10,
                                dropout_rate=0.4, dropout_type="spatial",
                                block_dropout_rate=0.1, tunable_dropout=True)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for name, rate, spatial in [("fc1_drop", 0.4, False), ("block1_drop", 0.1, True)]:
        layer = loaded.get_layer(name)
        assert isinstance(layer, VariableDropout)
        assert (layer.rate, layer.spatial) == (rate, spatial)
    x = _x((2, 8, 8, 1))
    np.testing.assert_array_equal(_np(loaded(x)), _np(model(x)))


def test_tunable_models_get_a_layer_wherever_a_configured_rate_goes():
    # At rate 0 a plain model has no layer there; a tunable one has a
    # VariableDropout at 0, so any later rate can be set without a new graph.
    plain = cnnzoo.create_model("vgg11", input_shape=(32, 32, 3), num_classes=10,
                                dropout_rate=0.5, block_dropout_rate=0.0)
    tunable = cnnzoo.create_model("vgg11", input_shape=(32, 32, 3), num_classes=10,
                                  dropout_rate=0.5, block_dropout_rate=0.0,
                                  tunable_dropout=True)
    drops = [layer for layer in tunable.layers if isinstance(layer, VariableDropout)]
    # Five stage-end block dropouts and the two head dropouts.
    assert [d.rate for d in drops] == [0.0] * 5 + [0.5, 0.5]
    assert sum("drop" in layer.name for layer in plain.layers) == 2
    trainable = sum(int(np.prod(w.shape)) for w in tunable.trainable_weights)
    assert trainable == plain.count_params()


@pytest.mark.parametrize("kwargs, name", [
    (dict(rate=-0.1), "rate"), (dict(rate=1.1), "rate"), (dict(spatial="yes"), "spatial"),
    (dict(data_format="nhwc"), "data_format"), (dict(seed=1.5), "seed"),
])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"Received: {name}="):
        VariableDropout(**kwargs)


def test_spatial_cannot_be_switched_on_without_feature_maps():
    # Built on a rank-2 input it has no spatial variable: the setting did
    # nothing while get_config() said spatial=True.
    layer = VariableDropout(0.3)
    layer(np.ones((2, 4), "float32"), training=True)
    with pytest.raises(ValueError, match="not 4D.*Received: spatial=True"):
        layer.spatial = True
    layer.spatial = False
    assert layer.get_config()["spatial"] is False
