"""`cnnzoo._flops`: FLOPs counted from layer shapes, checked against hand counts."""

import keras
import pytest

import cnnzoo
from cnnzoo import _flops


def test_flops_of_simple_cnn_counted_by_hand():
    model = cnnzoo.create_model("simple_cnn")
    conv1 = 2 * 28 * 28 * 3 * 3 * 1 * 32
    conv2 = 2 * 14 * 14 * 3 * 3 * 32 * 64
    fc1 = 2 * 7 * 7 * 64 * 128
    out = 2 * 128 * 10
    assert _flops.forward_flops(model) == (conv1 + conv2 + fc1 + out, conv1)
    # Forward, weight gradient, input gradient; no input gradient for the first layer.
    assert _flops.training_flops(model) == 3 * (conv1 + conv2 + fc1 + out) - conv1


def test_flops_count_nested_models_and_depthwise():
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, keras.layers.DepthwiseConv2D(3, padding="same")(inner_in))
    x_in = keras.Input((8, 8, 4))
    y = keras.layers.Conv2D(6, 1, groups=2)(inner(x_in))
    model = keras.Model(x_in, y)
    depthwise = 2 * 8 * 8 * 3 * 3 * 4
    grouped = 2 * 8 * 8 * 1 * 1 * 2 * 6
    assert _flops.forward_flops(model) == (depthwise + grouped, depthwise)


def test_dense_counts_every_row_and_other_layers_count_nothing():
    x_in = keras.Input((5, 7))
    x = keras.layers.Dense(3)(x_in)  # applied to each of the 5 rows
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.LayerNormalization()(x)
    model = keras.Model(x_in, keras.layers.GlobalAveragePooling1D()(x))
    assert _flops.forward_flops(model) == (2 * 5 * 7 * 3, 2 * 5 * 7 * 3)
    assert _flops.training_flops(model) == 2 * 2 * 5 * 7 * 3


def test_a_model_without_weight_layers_has_no_flops():
    x_in = keras.Input((4, 4, 2))
    model = keras.Model(x_in, keras.layers.MaxPooling2D()(x_in))
    assert _flops.forward_flops(model) == (0, 0)
    assert _flops.training_flops(model) == 0


def test_weight_layers_flattens_nested_models_in_call_order():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="inner_dense")(inner_in))
    x_in = keras.Input((4,))
    x = keras.layers.Dense(4, name="first")(x_in)
    model = keras.Model(x_in, keras.layers.Dense(2, name="last")(inner(x)))
    layers = list(_flops.weight_layers(model))
    assert [layer.name for layer in layers if hasattr(layer, "kernel")] == \
        ["first", "inner_dense", "last"]
    assert inner not in layers


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_flops_follow_the_input_area(name):
    # Convolutions scale with the map's area; the classifier does not.
    small, large = (cnnzoo.create_model(name, input_shape=(s, s, 3), num_classes=10)
                    for s in (32, 64))
    ratio = _flops.forward_flops(large)[0] / _flops.forward_flops(small)[0]
    assert 3.9 < ratio <= 4.0
