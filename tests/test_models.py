"""Every registered model: builds, predicts, trains, saves, and shows its knobs.

Parametrized over `cnnzoo.list_models()`, so a newly registered model is
covered at once. The per-model tests share one build per model at its
minimum input with every knob turned (`small`): a non-default activation,
per-stage spatial block dropout, head dropout and, for residual families,
stochastic depth.

On JAX, XLA:CPU compiles a new program for every new weight shape (about a
second each for the random initializers), so a whole-model run costs tens of
seconds to minutes there; CI's `-m multibackend` run therefore covers whole
models with `JAX_MODELS` (one plain CNN of each kind) and every residual
variant through `tests/test_blocks.py`. The TensorFlow run covers every model.
"""

import dataclasses
import gc
import importlib.util
import re

import keras
import numpy as np
import pytest

import cnnzoo
from cnnzoo.layers.drop_path import DropPath
from cnnzoo.models import _registry, alexnet, lenet, simple_cnn
from tests.helpers import max_pool_reference, weight_signature

ALL = cnnzoo.list_models()
JAX_MODELS = {"simple_cnn", "lenet5", "vgg11"}


def _params(names):
    return [pytest.param(n, marks=pytest.mark.multibackend) if n in JAX_MODELS else n
            for n in names]


def residual_blocks(name):
    """Blocks with a residual branch (each may get stochastic depth), from the registry."""
    return cnnzoo.model_info(name)["residual_blocks"]


def dropout_layers(name):
    """`(block dropout layers per stage, head dropout layers)` when every rate is non-zero."""
    dropout = cnnzoo.model_info(name)["dropout"]
    return dropout["block_layers"], dropout["head_layers"]


def knob_kwargs(name):
    info = cnnzoo.model_info(name)
    size = info["min_input_size"]
    kwargs = {
        "input_shape": (size, size, info["default_input_shape"][2]),
        "num_classes": 3,
        "activation": "gelu",
        "dropout_rate": 0.3,
        "dropout_type": "spatial",
        # A distinct rate per stage, so that each layer's stage shows.
        "block_dropout_rate": [round(0.05 * (i + 1), 2) for i in range(info["stages"])],
    }
    if "drop_path_rate" in info["supported_kwargs"]:
        kwargs["drop_path_rate"] = 0.2
    return kwargs


def hidden_activations(model):
    """The hidden activation layers (the classifier's activation is in its Dense layer)."""
    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU))]


def dropouts(model):
    spatial = [layer for layer in model.layers
               if isinstance(layer, keras.layers.SpatialDropout2D)]
    standard = [layer for layer in model.layers
                if isinstance(layer, keras.layers.Dropout) and layer not in spatial]
    return spatial, standard


@pytest.fixture
def zero_init(monkeypatch):
    """Skips the random draws of every Glorot/He/VarianceScaling initializer.

    Counting parameters and reading the graph do not depend on initial
    values, and drawing 100M+ random numbers for each VGG dominates those
    tests (4 s instead of 0.4 s per VGG).
    """

    def zeros(self, shape, dtype=None):
        return keras.ops.zeros(shape, dtype=dtype)

    monkeypatch.setattr(keras.initializers.VarianceScaling, "__call__", zeros)


@pytest.fixture(scope="module", params=_params(ALL))
def small(request):
    """`(name, kwargs, model, images)`: the model at its minimum input, every knob turned."""
    name = request.param
    keras.utils.set_random_seed(0)
    kwargs = knob_kwargs(name)
    model = cnnzoo.create_model(name, **kwargs)
    images = np.random.default_rng(0).random((2,) + kwargs["input_shape"]).astype("float32")
    yield name, kwargs, model, images
    del model
    keras.backend.clear_session()
    gc.collect()


# -- the per-model tests at the minimum input --------------------------------------
# They share `small`; the training step puts the weights back afterwards, so
# the order in which they run does not matter.


def test_builds_at_minimum_and_predicts_probabilities(small):
    name, kwargs, model, images = small
    assert model.name == name
    assert tuple(model.input.shape[1:]) == kwargs["input_shape"]
    probs = keras.ops.convert_to_numpy(model(images, training=False))
    assert probs.shape == (2, 3)
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_minimum_input_leaves_one_whole_pixel(small):
    # At the minimum the last feature map is exactly 1x1: any smaller input
    # either breaks a 'valid' op or ends on a map made partly of padding.
    name, _, model, _ = small
    feature_maps = [layer.output for layer in model.layers if len(layer.output.shape) == 4]
    assert tuple(feature_maps[-1].shape[1:3]) == (1, 1), name


def test_activation_knob_reaches_every_block(small):
    name, _, model, _ = small
    layers = hidden_activations(model)
    assert not [layer.name for layer in layers if isinstance(layer, keras.layers.ReLU)]
    assert len(layers) >= cnnzoo.model_info(name)["stages"]
    assert {layer.activation.__name__ for layer in layers} == {"gelu"}
    # Every activation layer is named after its block.
    assert all(re.search(r"_(act\w*|out|dwact)$", layer.name) for layer in layers), \
        [layer.name for layer in layers]


def test_dropout_knobs_number_rates_and_stages(small):
    name, kwargs, model, _ = small
    spatial, standard = dropouts(model)
    per_stage, n_head = dropout_layers(name)
    rates = kwargs["block_dropout_rate"]  # distinct and increasing, one per stage
    assert len(standard) == n_head
    for layer in standard:
        assert len(layer.input.shape) == 2
        assert layer.rate == pytest.approx(kwargs["dropout_rate"]), layer.name
    stages = []
    for layer in spatial:
        assert len(layer.input.shape) == 4
        matches = [i for i, r in enumerate(rates) if layer.rate == pytest.approx(r)]
        assert matches, (layer.name, layer.rate)
        stages.append(matches[0])
    # In the graph's order, stage after stage, each with the registered
    # number of layers: every layer has its own stage's rate.
    assert stages == sorted(stages)
    assert [stages.count(i) for i in range(len(rates))] == per_stage


def test_drop_path_count_and_linear_rates(small):
    name, kwargs, model, _ = small
    layers = [layer for layer in model.layers if isinstance(layer, DropPath)]
    n = residual_blocks(name)
    if "drop_path_rate" not in kwargs:
        assert not layers
        return
    # The first block's rate is 0, so it gets no layer.
    assert len(layers) == n - 1
    expected = [kwargs["drop_path_rate"] * i / (n - 1) for i in range(1, n)]
    np.testing.assert_allclose([layer.rate for layer in layers], expected, rtol=1e-6)


def test_keras_save_and_reload_safe_mode(small, tmp_path):
    name, kwargs, model, images = small
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    before = keras.ops.convert_to_numpy(model(images, training=False))
    after = keras.ops.convert_to_numpy(loaded(images, training=False))
    assert np.all(np.isfinite(before))
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    # The knobs survive the round trip.
    assert [(type(a), a.name, getattr(a, "rate", None)) for a in loaded.layers] == \
        [(type(b), b.name, getattr(b, "rate", None)) for b in model.layers]


def test_one_training_step_without_nan(small):
    name, _, model, images = small
    labels = np.array([0, 2])
    snapshot = [keras.ops.convert_to_numpy(w) for w in model.weights]
    trainable = {id(w) for w in model.trainable_weights}
    before = [s for w, s in zip(model.weights, snapshot) if id(w) in trainable]
    try:
        # Eager is the cheaper single step on TensorFlow; on JAX one jitted
        # step is cheaper than compiling every op.
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss="sparse_categorical_crossentropy",
                      run_eagerly=keras.backend.backend() != "jax")
        loss = float(np.ravel(keras.ops.convert_to_numpy(
            model.train_on_batch(images, labels)))[0])
        assert np.isfinite(loss), name
        after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        assert all(np.all(np.isfinite(w)) for w in after), name
        assert any(not np.array_equal(a, b) for a, b in zip(after, before)), name
    finally:
        # `small` is shared with this module's other tests, which must not
        # depend on running first (a batch-norm model at a 1x1 map and batch
        # 2 can predict NaN after a step): put every weight back.
        for weight, value in zip(model.weights, snapshot):
            weight.assign(value)


# -- the canonical configuration (TensorFlow only: counts do not depend on the backend)


@pytest.mark.parametrize("name", ALL)
def test_canonical_config_parameter_counts_and_defaults(name, zero_init):
    info = cnnzoo.model_info(name)
    model = cnnzoo.create_model(name)
    try:
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert (model.count_params(), trainable) == (info["params"], info["trainable_params"])
        assert tuple(model.input.shape[1:]) == info["default_input_shape"]
        assert tuple(model.output.shape) == (None, info["default_num_classes"])
        # The default activation is the registry's: relu, or relu6 where the
        # paper says so; nothing else.
        layers = hidden_activations(model)
        assert layers and all(isinstance(layer, keras.layers.ReLU) for layer in layers)
        max_value = 6.0 if info["default_activation"] == "relu6" else None
        assert {layer.max_value for layer in layers} == {max_value}
        # The paper's dropout: rates and number.
        spatial, standard = dropouts(model)
        assert not spatial
        per_stage, n_head = dropout_layers(name)
        n_block = sum(per_stage)
        head = info["dropout"]["dropout_rate"]
        block = info["dropout"]["block_dropout_rate"]
        assert len(standard) == n_head * (head > 0) + n_block * (block > 0)
        assert {layer.rate for layer in standard} <= {head, block}
    finally:
        del model
        keras.backend.clear_session()
        gc.collect()


# -- the minimum input is validated and real ----------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_below_minimum_input_is_a_clear_error(name):
    info = cnnzoo.model_info(name)
    size, channels = info["min_input_size"], info["default_input_shape"][2]
    for shape in [(size - 1, size - 1, channels), (size, size - 1, channels)]:
        with pytest.raises(ValueError, match=rf"at least {size}x{size} .*"
                                             rf"Received: input_shape=\({shape[0]}, "):
            cnnzoo.create_model(name, input_shape=shape)


@pytest.mark.parametrize("factory", [simple_cnn.simple_cnn, lenet.lenet5, alexnet.alexnet],
                         ids=lambda f: f.__name__)
def test_valid_op_chains_break_just_below_the_minimum(factory):
    # These architectures use 'valid' ops only: one pixel less and an op has
    # nothing left to slide over, so the minimum is not a convention. The
    # registered factory is called past `create_model`'s check.
    name = factory.__name__
    info = cnnzoo.model_info(name)
    size, channels = info["min_input_size"], info["default_input_shape"][2]
    cfg = _registry.resolve_config(name, input_shape=(size, size, channels), include_top=False)
    smaller = dataclasses.replace(cfg, input_shape=(size - 1, size - 1, channels))
    try:
        model = factory(smaller)
    except ValueError:
        return  # Keras refuses the negative size
    # Where Keras builds anyway, the last map has no pixel left.
    assert min(model.output.shape[1:3]) < 1


# -- the vocabulary, on small models -------------------------------------------------


@pytest.mark.multibackend
@pytest.mark.parametrize("activation, cls, attrs", [
    ("relu", keras.layers.ReLU, {"max_value": None, "negative_slope": 0.0}),
    ("relu6", keras.layers.ReLU, {"max_value": 6.0}),
    ("leaky_relu", keras.layers.ReLU, {"negative_slope": 0.2}),
    ("tanh", keras.layers.Activation, {}),
    ("silu", keras.layers.Activation, {}),
])
def test_activation_names(activation, cls, attrs):
    model = cnnzoo.create_model("lenet5", num_classes=3, activation=activation)
    layers = hidden_activations(model)
    assert len(layers) == 4  # C1, C3, C5, F6
    for layer in layers:
        assert type(layer) is cls
        for key, value in attrs.items():
            assert getattr(layer, key) == value
        if cls is keras.layers.Activation:
            assert layer.activation.__name__ == activation


@pytest.mark.multibackend
def test_activation_as_layer_class_and_callable():
    model = cnnzoo.create_model("lenet5", num_classes=3, activation=keras.layers.ELU)
    assert [type(layer) for layer in model.layers if "_act" in layer.name] == \
        [keras.layers.ELU] * 4
    model = cnnzoo.create_model("lenet5", num_classes=3, activation=keras.activations.hard_silu)
    assert {layer.activation.__name__ for layer in hidden_activations(model)} == {"hard_silu"}


def test_a_layer_instance_as_activation_is_copied_per_block():
    # One PReLU shared by every block had one input shape and one set of
    # weights: resnet18 failed to build.
    model = cnnzoo.create_model("resnet18", input_shape=(32, 32, 3), num_classes=3,
                                activation=keras.layers.PReLU(shared_axes=[1, 2]))
    prelus = [layer for layer in model.layers if isinstance(layer, keras.layers.PReLU)]
    assert len(prelus) == 17 and len({id(layer) for layer in prelus}) == 17
    assert {tuple(layer.shared_axes) for layer in prelus} == {(1, 2)}
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 3)


def test_mobilenet_v2_paper_relu6_unless_told_otherwise():
    model = cnnzoo.create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=3,
                                activation="relu")
    assert {layer.max_value for layer in hidden_activations(model)} == {None}
    assert cnnzoo.model_info("mobilenet_v2")["default_activation"] == "relu6"


@pytest.mark.multibackend
def test_standard_block_dropout_and_zero_rates_add_no_layers():
    model = cnnzoo.create_model("lenet5", num_classes=3, block_dropout_rate=[0.1, 0.0, 0.3],
                                dropout_rate=0.4)
    spatial, standard = dropouts(model)
    assert not spatial
    assert [(layer.name, layer.rate) for layer in standard] == \
        [("block1_drop1", 0.1), ("block3_drop1", 0.3), ("fc1_drop", 0.4)]


@pytest.mark.multibackend
def test_alexnet_dropout_precedes_fc6_and_fc7():
    model = cnnzoo.create_model("alexnet", input_shape=(63, 63, 3), num_classes=3)
    names = [layer.name for layer in model.layers]
    assert names[-7:] == ["fc1_drop", "fc1_dense", "fc1_act", "fc2_drop", "fc2_dense",
                          "fc2_act", "predictions"]
    assert model.get_layer("fc1_drop").rate == 0.5


@pytest.mark.multibackend
@pytest.mark.parametrize("pooling, shape", [(None, (None, 1, 1, 120)), ("avg", (None, 120)),
                                            ("max", (None, 120))])
def test_include_top_false_and_pooling(pooling, shape):
    model = cnnzoo.create_model("lenet5", include_top=False, pooling=pooling)
    assert tuple(model.output.shape) == shape
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_residual_include_top_false_and_logits():
    model = cnnzoo.create_model("resnet18", input_shape=(64, 48, 5), include_top=False)
    assert tuple(model.output.shape) == (None, 2, 2, 512)
    model = cnnzoo.create_model("lenet5", num_classes=4, classifier_activation=None,
                                name="logits_lenet")
    assert model.name == "logits_lenet"
    logits = keras.ops.convert_to_numpy(model(np.ones((2, 32, 32, 1), "float32") * 5))
    assert logits.shape == (2, 4) and not np.allclose(logits.sum(axis=1), 1.0)


def test_resnet50_stride_in_1x1_is_keras_applications_architecture():
    from cnnzoo import _flops

    shape = (64, 64, 3)
    v15 = cnnzoo.create_model("resnet50", input_shape=shape, num_classes=10)
    v1 = cnnzoo.create_model("resnet50", input_shape=shape, num_classes=10, stride_in_1x1=True)
    plain = keras.applications.ResNet50(weights=None, input_shape=shape, classes=10)
    layers15, layers1 = ({layer.name: layer for layer in m.layers} for m in (v15, v1))
    # Where the stride goes: the first 1x1 (v1) or the 3x3 (v1.5) of each
    # stage's first block; the shortcut is strided in both.
    for stage in (3, 4, 5):
        prefix = f"conv{stage}_block1"
        assert layers1[f"{prefix}_conv1"].strides == (2, 2)
        assert layers1[f"{prefix}_conv2"].strides == (1, 1)
        assert layers15[f"{prefix}_conv1"].strides == (1, 1)
        assert layers15[f"{prefix}_conv2"].strides == (2, 2)
        assert layers1[f"{prefix}_0_conv"].strides == layers15[f"{prefix}_0_conv"].strides
    assert v1.count_params() == v15.count_params()
    assert v1.output.shape == v15.output.shape == plain.output.shape
    # The same convolutions (and classifier) as keras.applications' ResNet50
    # (which adds a bias to each convolution: 26,560 parameters), hence the
    # same FLOPs; v1.5 does more.
    assert weight_signature(v1) == weight_signature(plain)
    assert plain.count_params() - v1.count_params() == sum(
        layer.filters for layer in plain.layers if isinstance(layer, keras.layers.Conv2D))
    flops1, flops15 = (_flops.forward_flops(m)[0] for m in (v1, v15))
    assert flops1 == _flops.forward_flops(plain)[0]
    assert 1.05 < flops15 / flops1 < 1.07


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_stem_max_pool_pads_with_minus_inf_after_any_activation(name):
    # After tanh half the stem's outputs are negative: a zero-padded pool
    # would put zeros on the border windows where PyTorch's keeps their max.
    model = cnnzoo.create_model(name, input_shape=(32, 32, 3), num_classes=3,
                                activation="tanh")
    probe = keras.Model(model.input, [model.get_layer("stem_act").output,
                                      model.get_layer("stem_pool").output])
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    act, pooled = (keras.ops.convert_to_numpy(t) for t in probe(x))
    assert (act < 0).mean() > 0.2
    np.testing.assert_array_equal(pooled, max_pool_reference(act, 3, 2, 1))


def test_stride_in_1x1_only_for_bottleneck_resnets():
    for name in cnnzoo.list_models():
        supported = "stride_in_1x1" in cnnzoo.model_info(name)["supported_kwargs"]
        assert supported == (name in ("resnet50", "resnet101")), name
    with pytest.raises(ValueError, match="True or False") as error:
        cnnzoo.create_model("resnet50", stride_in_1x1="yes")
    assert str(error.value).endswith("Received: stride_in_1x1='yes'")
    with pytest.raises(ValueError, match="does not support the keyword `stride_in_1x1`"):
        cnnzoo.create_model("resnet18", stride_in_1x1=True)


_PRIMITIVE = all(importlib.util.find_spec(f"cnnzoo.layers.{m}") for m in ("relu", "dropout"))


@pytest.mark.multibackend
@pytest.mark.skipif(not _PRIMITIVE, reason="cnnzoo.layers.relu/dropout not written yet")
def test_primitive_implementation_swaps_every_relu_and_dropout():
    from cnnzoo import layers

    model = cnnzoo.create_model("lenet5", num_classes=3, implementation="primitive",
                                dropout_rate=0.2, block_dropout_rate=0.1,
                                dropout_type="spatial")
    kinds = [type(layer) for layer in model.layers]
    assert kinds.count(layers.ReLU) == 4
    assert kinds.count(layers.SpatialDropout2D) == 3
    assert kinds.count(layers.Dropout) == 1
    assert not [k for k in kinds if k.__module__.startswith("keras") and
                k.__name__ in ("ReLU", "Dropout", "SpatialDropout2D")]


def test_channels_first_is_refused_not_built_into_another_net():
    # Conv and pool layers follow the global format, batch norm and the
    # blocks do not: resnet18 built with 11.6M parameters instead of 11.2M.
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match="Received: image_data_format='channels_first'"):
            cnnzoo.create_model("resnet18", input_shape=(32, 32, 3), num_classes=2)
    finally:
        keras.config.set_image_data_format("channels_last")


def test_per_stage_rates_as_a_numpy_array():
    model = cnnzoo.create_model("simple_cnn", input_shape=(8, 8, 1), num_classes=3,
                                block_dropout_rate=np.array([0.1, 0.2]))
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)
             and "block" in layer.name]
    assert rates == [0.1, 0.2]
