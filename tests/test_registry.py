"""The registry: names, patterns, metadata, and every bad argument of `create_model`.

Nothing here builds a model: every check below fails before Keras is touched.
`create_model` validates every model's arguments in one place
(`resolve_config`), so a rule that does not depend on the model is tested
once, on one model; what each model declares (its stages, keywords and
minimum input) is tested per model.
"""

import math
import re

import pytest

import cnnzoo
from cnnzoo.models import _registry, alexnet, densenet, lenet, mobilenet_v2, resnet, vgg
from cnnzoo.models import wide_resnet
from cnnzoo.models._registry import min_input_size, total_stride

ALL = cnnzoo.list_models()
ISSUE_MODELS = {
    "simple_cnn", "lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn",
    "vgg13_bn", "vgg16_bn", "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101",
    "wide_resnet28_10", "mobilenet_v2", "densenet121",
}
RESIDUAL = [n for n in ALL if "drop_path_rate" in cnnzoo.model_info(n)["supported_kwargs"]]


def assert_received(error, name, value_pattern=".*"):
    """The message ends with `Received: name=value`, on one line."""
    message = str(error.value)
    assert re.search(rf"Received: {re.escape(name)}={value_pattern}\Z", message), message


# -- names and patterns ---------------------------------------------------------------


def test_every_model_of_the_issue_is_registered():
    assert ISSUE_MODELS <= set(ALL)
    assert ALL == sorted(ALL)


@pytest.mark.parametrize("pattern, expected", [
    ("resnet*", ["resnet101", "resnet18", "resnet34", "resnet50"]),
    ("vgg*_bn", ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]),
    ("vgg1?", ["vgg11", "vgg13", "vgg16", "vgg19"]),
    (["lenet*", "alex*"], ["alexnet", "lenet5"]),
    ("*net121", ["densenet121"]),
    ("efficientnet*", []),
])
def test_list_models_fnmatch_patterns(pattern, expected):
    assert cnnzoo.list_models(pattern) == expected


@pytest.mark.parametrize("pattern", [3, [1, "x"], b"vgg*"])
def test_list_models_bad_pattern(pattern):
    with pytest.raises(ValueError, match="pattern") as error:
        cnnzoo.list_models(pattern)
    assert_received(error, "pattern")


@pytest.mark.parametrize("name, suggestion", [("resnet5", "resnet50"), ("vgg_16", "vgg16"),
                                              ("mobilenetv2", "mobilenet_v2")])
def test_unknown_model_suggests_close_matches(name, suggestion):
    for call in (cnnzoo.create_model, cnnzoo.model_info):
        with pytest.raises(ValueError, match="list_models") as error:
            call(name)
        assert f"Did you mean '{suggestion}'" in str(error.value)
        assert_received(error, "name", re.escape(repr(name)))


@pytest.mark.parametrize("name", [None, 42, ["vgg16"], "zzzz"])
def test_unknown_model_without_close_match(name):
    with pytest.raises(ValueError, match="Unknown model") as error:
        cnnzoo.create_model(name)
    assert "Did you mean" not in str(error.value)
    assert_received(error, "name")


_REGISTRATION = dict(family="x", paper="x", default_input_shape=(8, 8, 1), min_input_size=1,
                     stages=2, params=1, reference="x", block_dropout_layers=[1, 1],
                     head_dropout_layers=1)


@pytest.mark.parametrize("change, expected", [
    ({"block_dropout_layers": [1]}, "one count per stage"),
    ({"block_dropout_layers": [1, -1]}, "one count per stage"),
    ({"search_space": {"dropout_rate": (0.0, 0.5, 0.1)}}, "dict of 'dropout_rate' and"),
    ({"search_space": {"dropout_rate": (0.0, 0.5), "block_dropout_rate": (0.0, 0.3, 0.1)}},
     r"\(low, high, step\)"),
    ({"search_space": {"dropout_rate": (0.5, 0.1, 0.1), "block_dropout_rate": (0.0, 0.3, 0.1)}},
     "low < high"),
    ({"search_space": {"dropout_rate": (0.0, 1.5, 0.1), "block_dropout_rate": (0.0, 0.3, 0.1)}},
     r"in \[0.0, 1.0\)"),
])
def test_a_bad_registration_fails_at_import_time(change, expected):
    # Nothing is registered: the decorator is refused before it is made.
    with pytest.raises(ValueError, match=expected):
        _registry.register_model(**{**_REGISTRATION, **change})
    assert "never_registered" not in cnnzoo.list_models()


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        _registry.register_model(**_REGISTRATION)(cnnzoo.models.lenet.lenet5)


# -- metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_model_info_fields(name):
    info = cnnzoo.model_info(name)
    assert info["name"] == name
    for key in ("family", "paper", "description", "reference", "default_activation"):
        assert isinstance(info[key], str) and info[key]
    height, width, channels = info["default_input_shape"]
    assert height >= info["min_input_size"] >= 1 and width >= info["min_input_size"]
    assert info["default_num_classes"] >= 1 and info["stages"] >= 1
    assert info["params"] >= info["trainable_params"] > 0
    assert set(info["dropout"]) == {"placement", "dropout_rate", "block_dropout_rate",
                                    "block_layers", "head_layers"}
    assert 0 <= info["dropout"]["dropout_rate"] < 1
    assert set(_registry.COMMON_KWARGS) <= set(info["supported_kwargs"])
    assert ("drop_path_rate" in info["supported_kwargs"]) == (info["residual_blocks"] > 0)
    # The reference's counts are the registered ones (total or trainable).
    counts = {int(c.replace(",", "")) for c in re.findall(r"\d{1,3}(?:,\d{3})+", info["reference"])}
    assert counts and counts <= {info["params"], info["trainable_params"]}, info["reference"]
    # What each dropout rate controls, and the search's ranges.
    assert len(info["dropout"]["block_layers"]) == info["stages"]
    assert min(info["dropout"]["block_layers"]) >= 1 and info["dropout"]["head_layers"] >= 0
    assert set(info["search_space"]) == {"dropout_rate", "block_dropout_rate"}
    for low, high, step in info["search_space"].values():
        assert 0 <= low < high < 1 and step > 0
    assert isinstance(info["cpu_mixed_bfloat16"], bool)
    # A copy: changing it changes nothing.
    info["dropout"]["dropout_rate"] = 0.9
    assert cnnzoo.model_info(name)["dropout"]["dropout_rate"] != 0.9


@pytest.mark.parametrize("name, head, block, activation", [
    ("simple_cnn", 0.5, 0.0, "relu"),
    ("lenet5", 0.0, 0.0, "relu"),
    ("alexnet", 0.5, 0.0, "relu"),
    ("vgg16", 0.5, 0.0, "relu"),
    ("vgg19_bn", 0.5, 0.0, "relu"),
    ("resnet50", 0.0, 0.0, "relu"),
    ("wide_resnet28_10", 0.0, 0.3, "relu"),
    ("mobilenet_v2", 0.2, 0.0, "relu6"),
    ("densenet121", 0.0, 0.0, "relu"),
])
def test_paper_dropout_and_activation_defaults(name, head, block, activation):
    info = cnnzoo.model_info(name)
    assert info["dropout"]["dropout_rate"] == head
    assert info["dropout"]["block_dropout_rate"] == block
    assert info["default_activation"] == activation
    cfg = _registry.resolve_config(name)
    assert cfg.dropout_rate == head
    assert cfg.block_dropout_rate == [block] * info["stages"]
    assert cfg.activation == activation


def test_densenet_documents_the_papers_optional_dropout():
    assert "0.2" in cnnzoo.model_info("densenet121")["dropout"]["placement"]


@pytest.mark.parametrize("name, stages", [("simple_cnn", 2), ("lenet5", 3), ("alexnet", 5),
                                          ("vgg11", 5), ("resnet18", 4), ("resnet101", 4),
                                          ("wide_resnet28_10", 3), ("mobilenet_v2", 7),
                                          ("densenet121", 4)])
def test_stages(name, stages):
    assert cnnzoo.model_info(name)["stages"] == stages


def test_minimum_inputs_are_derived_from_the_op_chains():
    # 'valid' chains: the smallest input every op survives.
    assert cnnzoo.model_info("alexnet")["min_input_size"] == min_input_size(alexnet.OPS) == 63
    assert cnnzoo.model_info("lenet5")["min_input_size"] == min_input_size(lenet.OPS) == 32
    assert cnnzoo.model_info("vgg16")["min_input_size"] == vgg.MIN_INPUT == 32
    # Padded chains survive any input; their minimum is the total stride.
    for module, name, stride in [(resnet, "resnet50", 32), (wide_resnet, "wide_resnet28_10", 4),
                                 (mobilenet_v2, "mobilenet_v2", 32),
                                 (densenet, "densenet121", 32)]:
        assert total_stride(module.OPS) == stride
        assert cnnzoo.model_info(name)["min_input_size"] == stride
    assert min_input_size(resnet.OPS) == 1
    # DenseNet's 'valid' 2x2 transitions alone would allow 29.
    assert min_input_size(densenet.OPS) == 29


def test_min_input_size_helper():
    assert min_input_size([(3, 1, "valid")]) == 3
    assert min_input_size([(3, 2, "valid"), (3, 2, "valid")]) == 7
    assert min_input_size([(3, 1, 1)]) == 1
    assert min_input_size([(2, 2, "same")] * 3) == 1
    assert min_input_size([(11, 4, 2), (3, 2, "valid")]) == 15
    assert total_stride([(7, 2, 3), (3, 2, 1), (3, 1, "same")]) == 4
    with pytest.raises(ValueError, match="Received: ops="):
        min_input_size([(5, 1, "valid")], limit=4)


# -- bad arguments ----------------------------------------------------------------------

NAN = float("nan")
# (keyword, value, what the message says): every model rejects these.
BAD_ARGUMENTS = [
    ("dropout_rate", 1.0, r"in \[0.0, 1.0\)"),
    ("dropout_rate", -0.1, r"in \[0.0, 1.0\)"),
    ("dropout_rate", NAN, "not NaN"),
    ("dropout_rate", True, "a number"),
    ("dropout_rate", "0.5", "a number"),
    ("dropout_rate", None, "a number"),
    ("block_dropout_rate", 1.5, r"in \[0.0, 1.0\)"),
    ("block_dropout_rate", NAN, "not NaN"),
    ("block_dropout_rate", False, "a number"),
    ("block_dropout_rate", "0.1", "a number"),
    ("num_classes", 0, r"integer in \[1, inf\]"),
    ("num_classes", -3, r"integer in \[1, inf\]"),
    ("num_classes", 10.0, "an integer"),
    ("num_classes", True, "an integer"),
    ("num_classes", "10", "an integer"),
    ("activation", "relux", r"Did you mean 'relu'"),
    ("activation", "swishy", "gelu"),
    ("activation", 3, "activation name"),
    ("classifier_activation", "softmaxx", "softmax"),
    ("dropout_type", "gaussian", "standard"),
    ("dropout_type", None, "spatial"),
    ("implementation", "torch", "keras"),
    ("pooling", "sum", "avg"),
    ("include_top", 1, "True or False"),
    ("include_top", "yes", "True or False"),
    ("input_shape", (32, 32), r"\(height, width, channels\)"),
    ("input_shape", "32,32,3", r"\(height, width, channels\)"),
    ("input_shape", (64.0, 64, 3), "three positive integers"),
    ("input_shape", (64, 64, 0), "three positive integers"),
    ("name", "", "non-empty string"),
    ("name", 7, "non-empty string"),
    ("name", "a/b", "without '/'"),  # Keras's own error otherwise
]


@pytest.mark.parametrize("key, value, expected", BAD_ARGUMENTS,
                         ids=[f"{k}={v!r}" for k, v, _ in BAD_ARGUMENTS])
def test_bad_argument_is_a_clear_value_error(key, value, expected):
    with pytest.raises(ValueError, match=expected) as error:
        cnnzoo.create_model("lenet5", **{key: value})
    assert_received(error, key)


def test_activation_error_lists_the_valid_names():
    with pytest.raises(ValueError) as error:
        cnnzoo.create_model("lenet5", activation="relu7")
    for valid in ("relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "sigmoid", "tanh"):
        assert f"'{valid}'" in str(error.value)
    assert_received(error, "activation", "'relu7'")


@pytest.mark.parametrize("name", ALL)
def test_per_stage_list_of_the_wrong_length(name):
    stages = cnnzoo.model_info(name)["stages"]
    for rates in ([0.1] * (stages + 1), [0.1] * (stages - 1), []):
        with pytest.raises(ValueError, match=f"a list of {stages} values") as error:
            cnnzoo.create_model(name, block_dropout_rate=rates)
        assert_received(error, "block_dropout_rate", re.escape(repr(rates)))


def test_bad_rate_inside_a_per_stage_list_is_named():
    rates = [0.1, 0.1, 0.1, 1.0]
    with pytest.raises(ValueError, match=r"in \[0.0, 1.0\)") as error:
        cnnzoo.create_model("resnet18", block_dropout_rate=rates)
    assert_received(error, "block_dropout_rate[3]", "1.0")


@pytest.mark.parametrize("name", ALL)
def test_unsupported_keyword_names_the_supported_ones(name):
    # `weights` is create_model's own keyword now (tests/test_weights.py).
    for key in ("drop_rate",):
        with pytest.raises(ValueError, match="does not support the keyword") as error:
            cnnzoo.create_model(name, **{key: 0.1})
        for supported in cnnzoo.model_info(name)["supported_kwargs"]:
            assert supported in str(error.value)
        assert_received(error, key, "0.1")


@pytest.mark.parametrize("name", ALL)
def test_drop_path_only_for_residual_families(name):
    if name in RESIDUAL:
        assert _registry.resolve_config(name, drop_path_rate=0.1).drop_path_rate == 0.1
        return
    with pytest.raises(ValueError, match="does not support the keyword `drop_path_rate`") as error:
        cnnzoo.create_model(name, drop_path_rate=0.1)
    assert_received(error, "drop_path_rate", "0.1")


@pytest.mark.parametrize("value", [1.0, -0.5, NAN, True, "0.1"])
def test_bad_drop_path_rate(value):
    with pytest.raises(ValueError, match="drop_path_rate") as error:
        cnnzoo.create_model("resnet18", drop_path_rate=value)
    assert_received(error, "drop_path_rate")


def test_residual_families_support_stochastic_depth():
    assert set(RESIDUAL) == {"resnet18", "resnet34", "resnet50", "resnet101",
                             "wide_resnet28_10", "mobilenet_v2"}


def test_valid_config_resolves():
    cfg = _registry.resolve_config("resnet18", input_shape=[40, 36, 1], num_classes=5,
                                   block_dropout_rate=(0.0, 0.1, 0.2, 0.3), drop_path_rate=0.1,
                                   dropout_type="spatial", activation="elu", pooling="max",
                                   name="r18")
    assert cfg.input_shape == (40, 36, 1)
    assert cfg.block_dropout_rate == [0.0, 0.1, 0.2, 0.3]
    assert math.isclose(cfg.drop_path_rate, 0.1)
    assert (cfg.activation, cfg.dropout_type, cfg.pooling, cfg.name) == \
        ("elu", "spatial", "max", "r18")
