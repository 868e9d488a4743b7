"""The block builder: layer order, names, padding, shortcuts, stochastic depth, the head."""

import keras
import numpy as np
import pytest

from cnnzoo import verify
from cnnzoo.blocks import Blocks
from cnnzoo.layers.drop_path import DropPath
from cnnzoo.models import ZooConfig
from tests.helpers import max_pool_reference

pytestmark = pytest.mark.multibackend


def make(input_shape=(8, 8, 4), num_residual_blocks=0, **overrides):
    """A `Blocks` over a hand-made config with two stages (block rates 0.1, 0.2)."""
    fields = {"input_shape": input_shape, "num_classes": 3, "block_dropout_rate": [0.1, 0.2]}
    fields.update(overrides)
    blocks = Blocks(ZooConfig(**fields), num_residual_blocks=num_residual_blocks)
    return blocks, blocks.inputs()


def names(model):
    return [layer.name for layer in model.layers[1:]]


def run(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=(2,) + shape).astype("float32")


def test_conv_block_order_names_and_bias():
    blocks, inputs = make()
    x = blocks.conv_block(inputs, 8, 3, "block2", 1, padding=1, batch_norm=True,
                          dropout_rate=blocks.stage_rate(1), pool="max")
    model = blocks.model(inputs, x)
    assert names(model) == ["block2_pad1", "block2_conv1", "block2_bn1", "block2_act1",
                            "block2_drop1", "block2_pool"]
    assert model.get_layer("block2_conv1").use_bias is False  # batch norm follows
    assert model.get_layer("block2_conv1").padding == "valid"
    assert model.get_layer("block2_drop1").rate == 0.2
    assert tuple(model.output.shape) == (None, 4, 4, 8)


def test_conv_block_without_extras_and_spatial_dropout():
    blocks, inputs = make(dropout_type="spatial")
    x = blocks.conv_block(inputs, 4, 3, "block1", dropout_rate=0.3)
    x = blocks.conv_block(x, 4, 3, "block9", activation=False)
    model = blocks.model(inputs, x)
    assert names(model) == ["block1_conv", "block1_act", "block1_drop", "block9_conv"]
    assert isinstance(model.get_layer("block1_drop"), keras.layers.SpatialDropout2D)
    assert model.get_layer("block1_conv").use_bias is True


@pytest.mark.parametrize("dropout_first, expected", [
    (False, ["fc1_dense", "fc1_act", "fc1_drop"]),
    (True, ["fc1_drop", "fc1_dense", "fc1_act"]),
])
def test_dense_block_dropout_placement(dropout_first, expected):
    blocks, inputs = make(input_shape=(6,), dropout_type="spatial")
    model = blocks.model(inputs, blocks.dense_block(inputs, 5, "fc1", dropout_rate=0.5,
                                                    dropout_first=dropout_first))
    assert names(model) == expected
    # A 2D tensor always gets standard dropout.
    assert type(model.get_layer("fc1_drop")) is keras.layers.Dropout


def test_strided_padding_is_pytorchs():
    assert Blocks.strided_padding(3, 1) == "same"
    assert Blocks.strided_padding(3, 2) == 1
    assert Blocks.strided_padding(7, 2) == 3
    assert Blocks.strided_padding(1, 2) == 0


@pytest.mark.parametrize("size", [7, 6])
def test_padded_max_pool_pads_with_minus_inf(size):
    from cnnzoo.layers.padding import MaxPoolPadding2D

    blocks, inputs = make(input_shape=(size, size, 3))
    model = blocks.model(inputs, blocks.pool(inputs, "stem_pool", kind="max", pool_size=3,
                                             strides=2, padding=1))
    assert names(model) == ["stem_pool_pad", "stem_pool"]
    assert isinstance(model.get_layer("stem_pool_pad"), MaxPoolPadding2D)
    x = -np.abs(images((size, size, 3)))  # all negative: a zero border would win
    want = max_pool_reference(x, 3, 2, 1)
    np.testing.assert_array_equal(run(model, x), want)
    assert (want < 0).all()
    zero_padded = keras.layers.MaxPooling2D(3, 2)(keras.layers.ZeroPadding2D(1)(x))
    assert not np.array_equal(keras.ops.convert_to_numpy(zero_padded), want)
    # The gradient reaches each window's max and nothing else, and is finite.
    grad = verify.grad_of_sum(model, x)
    assert np.isfinite(grad).all() and grad.sum() == want.size
    # An average pool pads with zeros, counted in the mean (PyTorch's default).
    blocks, inputs = make(input_shape=(size, size, 3))
    avg = blocks.model(inputs, blocks.pool(inputs, "p", kind="avg", pool_size=3, strides=2,
                                           padding=1))
    assert type(avg.get_layer("p_pad")) is keras.layers.ZeroPadding2D


def test_max_pool_padding_config_shapes_and_bad_input():
    from cnnzoo.layers.padding import MaxPoolPadding2D

    layer = MaxPoolPadding2D(((1, 2), (0, 3)), name="p")
    again = MaxPoolPadding2D.from_config(layer.get_config())
    assert again.padding == layer.padding == ((1, 2), (0, 3))
    assert layer.compute_output_shape((None, 4, 5, 2)) == (None, 7, 8, 2)
    assert MaxPoolPadding2D((1, 2)).padding == ((1, 1), (2, 2))
    first = MaxPoolPadding2D(1, data_format="channels_first")
    out = keras.ops.convert_to_numpy(first(np.zeros((1, 2, 3, 4), "float32")))
    assert out.shape == (1, 2, 5, 6) and np.isneginf(out[0, :, 0]).all()
    for bad in (-1, 1.5, True, (1, 2, 3), ((1, 2), (3,))):
        with pytest.raises(ValueError, match=r"Expected `padding`.*Received: padding="):
            MaxPoolPadding2D(bad)


@pytest.mark.parametrize("size", [8, 7])
def test_basic_block_downsampling_pads_both_sides(size):
    blocks, inputs = make(input_shape=(size, size, 4))
    model = blocks.model(inputs, blocks.basic_block(inputs, 8, "conv3_block1", 1, strides=2))
    assert model.get_layer("conv3_block1_pad1").padding == ((1, 1), (1, 1))
    assert model.get_layer("conv3_block1_conv1").padding == "valid"
    assert model.get_layer("conv3_block1_0_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_drop1").rate == 0.2
    assert tuple(model.output.shape) == (None, 4, 4, 8)  # ceil(size / 2), like PyTorch


def test_basic_block_identity_shortcut():
    blocks, inputs = make()
    model = blocks.model(inputs, blocks.basic_block(inputs, 4, "conv2_block2", 0))
    assert "conv2_block2_0_conv" not in names(model)
    assert names(model)[-2:] == ["conv2_block2_add", "conv2_block2_out"]
    # With the branch's last batch norm zeroed, the block is act(x): the
    # shortcut really is the identity.
    bn = model.get_layer("conv2_block2_bn2")
    bn.gamma.assign(np.zeros(4, "float32"))
    bn.beta.assign(np.zeros(4, "float32"))
    x = images((8, 8, 4))
    np.testing.assert_allclose(run(model, x), np.maximum(x, 0), atol=1e-6)


def test_bottleneck_block_is_v1_5():
    blocks, inputs = make()
    model = blocks.model(inputs, blocks.bottleneck_block(inputs, 4, "conv3_block1", 1,
                                                         strides=2))
    assert model.get_layer("conv3_block1_conv1").strides == (1, 1)
    assert model.get_layer("conv3_block1_conv2").strides == (2, 2)  # the stride is on the 3x3
    assert model.get_layer("conv3_block1_conv3").kernel_size == (1, 1)
    assert model.get_layer("conv3_block1_drop2").rate == 0.2
    assert tuple(model.output.shape) == (None, 4, 4, 16)


def test_preact_wide_block_order_and_shortcut():
    blocks, inputs = make()
    model = blocks.model(inputs, blocks.preact_wide_block(inputs, 8, "conv2_block1", 0))
    chain = ["bn1", "act1", "conv1", "bn2", "act2", "drop", "conv2"]
    assert sorted(names(model)) == sorted([f"conv2_block1_{n}" for n in chain] +
                                          ["conv2_block1_0_conv", "conv2_block1_add"])
    layer = model.get_layer
    # BN-act-conv, dropout, BN-act-conv: each layer feeds the next.
    for before, after in zip(chain, chain[1:]):
        assert layer(f"conv2_block1_{after}").input is layer(f"conv2_block1_{before}").output
    # The projection sees the pre-activated input, as in the authors' code.
    assert layer("conv2_block1_0_conv").input is layer("conv2_block1_act1").output
    assert all(not model.get_layer(f"conv2_block1_{c}").use_bias
               for c in ("conv1", "conv2", "0_conv"))


def test_preact_wide_block_identity_when_branch_is_zero():
    blocks, inputs = make()
    model = blocks.model(inputs, blocks.preact_wide_block(inputs, 4, "conv2_block2", 0))
    conv2 = model.get_layer("conv2_block2_conv2")
    conv2.kernel.assign(np.zeros(conv2.kernel.shape, "float32"))
    x = images((8, 8, 4))
    np.testing.assert_allclose(run(model, x), x, atol=1e-6)  # no activation after the add


def test_inverted_residual_shortcut_only_when_shapes_match():
    blocks, inputs = make()
    x = blocks.inverted_residual(inputs, 8, "block1", 0, strides=2, expansion=1)
    y = blocks.inverted_residual(x, 8, "block2", 1, strides=1, expansion=2)
    model = blocks.model(inputs, y)
    layers = names(model)
    assert "block1_conv_expand" not in layers and "block1_add" not in layers
    assert "block2_conv_expand" in layers and "block2_add" in layers
    assert model.get_layer("block1_dwpad").padding == ((1, 1), (1, 1))
    assert model.get_layer("block2_conv_expand").filters == 16
    assert model.get_layer("block2_drop").rate == 0.2
    # The projection is linear: no activation between it and the add.
    assert layers[layers.index("block2_bn_project") + 1] == "block2_add"
    assert tuple(model.output.shape) == (None, 4, 4, 8)


def test_inverted_residual_identity_when_projection_is_zero():
    blocks, inputs = make()
    model = blocks.model(inputs, blocks.inverted_residual(inputs, 4, "block3", 0, expansion=2))
    bn = model.get_layer("block3_bn_project")
    bn.gamma.assign(np.zeros(4, "float32"))
    x = images((8, 8, 4))
    np.testing.assert_allclose(run(model, x), x, atol=1e-6)


def test_dense_layer_concatenates_growth_channels():
    blocks, inputs = make()
    model = blocks.model(inputs, blocks.dense_layer(inputs, 3, "conv2_block1", 1, bn_size=2))
    assert model.get_layer("conv2_block1_conv1").filters == 6
    assert [model.get_layer(f"conv2_block1_drop{i}").rate for i in (1, 2)] == [0.2, 0.2]
    assert tuple(model.output.shape) == (None, 8, 8, 7)
    x = images((8, 8, 4))
    np.testing.assert_allclose(run(model, x)[..., :4], x)  # the input passes through


@pytest.mark.parametrize("count, expected", [(4, [0.1, 0.2, 0.3]), (1, [0.3])])
def test_drop_path_rates_grow_linearly(count, expected):
    blocks, inputs = make(num_residual_blocks=count, drop_path_rate=0.3)
    x = inputs
    for i in range(count):
        x = blocks.basic_block(x, 4, f"conv2_block{i + 1}", 0)
    model = blocks.model(inputs, x)
    rates = [layer.rate for layer in model.layers if isinstance(layer, DropPath)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_drop_path_drops_whole_samples():
    layer = DropPath(0.5, seed=3)
    x = np.ones((64, 3, 3, 2), "float32")
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    per_sample = out.reshape(64, -1)
    # Each sample's branch is either dropped or scaled by 1 / (1 - rate).
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert all(len(np.unique(row)) == 1 for row in per_sample)
    kept = (per_sample[:, 0] > 0).sum()
    # Binomial(64, 0.5): mean 32, standard error 4; five standard errors.
    assert abs(kept - 32) <= 20
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    assert DropPath.from_config(layer.get_config()).rate == 0.5


def test_drop_path_needs_a_batch_axis():
    with pytest.raises(ValueError, match=r"Received: inputs.shape=\(\)"):
        DropPath(0.5)(np.float32(1.0), training=True)


@pytest.mark.multibackend
def test_drop_path_drops_infinite_branches_to_zero():
    # A dropped branch is 0, as dropout's; inf * 0 would be NaN.
    layer = DropPath(0.5, seed=0)
    x = np.full((64, 2, 2, 1), np.inf, "float32")
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    assert not np.isnan(out).any()
    assert set(np.unique(out)) == {0.0, np.inf}


@pytest.mark.parametrize("include_top, pooling, shape, last", [
    (True, None, (None, 3), "predictions"),
    (True, "max", (None, 3), "predictions"),
    (False, None, (None, 8, 8, 4), None),
    (False, "avg", (None, 4), "avg_pool"),
])
def test_pooled_head(include_top, pooling, shape, last):
    blocks, inputs = make(include_top=include_top, pooling=pooling, dropout_rate=0.2)
    outputs = blocks.pooled_head(inputs)
    assert tuple(outputs.shape) == shape
    if outputs is inputs:
        return  # the feature map as it is (a model of no layer, which Keras 3.10 and 3.11 refuse)
    model = blocks.model(inputs, outputs)
    assert tuple(model.output.shape) == shape
    if last:
        assert model.layers[-1].name == last
    if include_top:
        pool = model.get_layer("avg_pool")
        kind = keras.layers.GlobalMaxPooling2D if pooling == "max" else \
            keras.layers.GlobalAveragePooling2D
        assert isinstance(pool, kind)
        assert model.get_layer("head_drop").rate == 0.2


def test_classifier_stays_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    blocks, inputs = make(input_shape=(6,), classifier_activation=keras.layers.Softmax)
    model = blocks.model(inputs, blocks.classifier(blocks.dense_block(inputs, 5, "fc1")))
    assert model.get_layer("fc1_dense").compute_dtype == "bfloat16"
    assert names(model)[-2:] == ["predictions", "predictions_act"]
    assert model.output.dtype == "float32"
    probs = run(model, images((6,)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
