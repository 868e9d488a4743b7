"""Pretrained weights: exact conversions, the download path, adaptation, errors.

Nothing here touches the network. The references are the publishers' own
architectures with random weights, saved in the publishers' own file
layouts: `keras.applications.X(weights=None)` saved as `.h5` (Keras's own
writer), and a random state dict with torchvision's names and shapes written
with `safetensors`, loaded by keras-hub's timm converter (or, where
keras-hub has none, compared with a NumPy reference of the torchvision
block). Logits are compared at float32 with a tolerance relative to their
scale (random weights give logits up to 1e4): 1e-5 of the largest logit.
"""

import json
import os
import warnings

import numpy as np
import pytest

import keras

import cnnzoo
from cnnzoo.weights import convert, sources
from cnnzoo.weights.preprocessing import Preprocessing
from tests.helpers import needs, save_torch, torch_state

MEAN = np.array([0.485, 0.456, 0.406], "float32")
STD = np.array([0.229, 0.224, 0.225], "float32")
RTOL = 1e-5  # of the largest reference logit


def _close(reference, ours):
    reference, ours = np.asarray(reference), np.asarray(ours)
    assert reference.shape == ours.shape
    scale = max(1.0, float(np.abs(reference).max()))
    assert float(np.abs(reference - ours).max()) <= RTOL * scale


def _images(size, channels=3, n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype("float32")


def _randomize_statistics(model, seed=0):
    # keras.applications starts with zero biases, mean 0 and variance 1: a
    # fold of the bias or the epsilon would go unseen.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape[0]))
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)])


# -- keras.applications -------------------------------------------------------------------

KERAS_CASES = [
    # name, keras.applications class, its preprocess_input module, size, include_top
    ("vgg16", "VGG16", "vgg16", 32, True),
    ("vgg19", "VGG19", "vgg19", 32, False),
    ("resnet50", "ResNet50", "resnet", 64, True),
    ("resnet101", "ResNet101", "resnet", 64, False),
    ("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 64, True),
    ("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 65, False),
    ("densenet121", "DenseNet121", "densenet", 64, True),
]


@pytest.mark.parametrize("name,cls,module,size,top", KERAS_CASES)
def test_keras_applications_file_loads_exactly(tmp_path, name, cls, module, size, top):
    """keras.applications' model with random weights, saved by Keras as .h5, gives the same outputs.

    Raw 0-255 images go into cnnzoo's model; keras.applications' own
    `preprocess_input` prepares them for its model. ResNet is v1
    (`stride_in_1x1=True`, set by the weights), MobileNetV2 pads as
    TensorFlow (an even size shows it), batch-norm statistics are random so
    that the bias and epsilon folds show.
    """
    reference = getattr(keras.applications, cls)(
        weights=None, include_top=top, input_shape=(size, size, 3), classifier_activation=None)
    _randomize_statistics(reference)
    path = str(tmp_path / f"{name}.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.save(path)  # keras.applications' layout: layer_names, weight_names
    model = cnnzoo.create_model(name, weights=path, input_shape=(size, size, 3),
                                include_top=top, classifier_activation=None)
    x = _images(size)
    prep = getattr(keras.applications, module).preprocess_input
    _close(reference.predict(prep(x.copy()), verbose=0), model.predict(x, verbose=0))


# -- torchvision / timm ----------------------------------------------------------------

def _hub_preset(tmp_path, name, state):
    folder = tmp_path / f"timm_{name}"
    folder.mkdir()
    save_torch(state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"architecture": name.replace("_bn", ""),
                                                    "num_classes": 1000}))
    return folder


@pytest.mark.parametrize("name,size", [("resnet18", 64), ("resnet34", 64), ("resnet50", 64),
                                       ("resnet101", 64), ("densenet121", 65)])
def test_timm_file_loads_as_keras_hub_loads_it(tmp_path, name, size):
    """keras-hub's timm converter on the same file is the reference.

    ResNet-50 is v1.5 (torchvision's). keras-hub's DenseNet pads as
    TensorFlow's "same", which equals PyTorch's symmetric padding at odd
    sizes only: 65.
    """
    keras_hub = needs("keras_hub", "keras-hub", "keras-hub>=0.32")
    state = torch_state(name, (size, size, 3))
    folder = _hub_preset(tmp_path, name, state)
    reference = keras_hub.models.ImageClassifier.from_preset(str(folder))
    model = cnnzoo.create_model(name, weights=str(folder / "model.safetensors"),
                                input_shape=(size, size, 3), classifier_activation=None)
    x = _images(size)
    _close(reference((x / 255.0 - MEAN) / STD), model.predict(x, verbose=0))


@pytest.mark.parametrize("name", ["vgg11", "vgg13", "vgg16", "vgg19"])
def test_timm_vgg_backbone_loads_as_keras_hub_loads_it(tmp_path, name):
    keras_hub = needs("keras_hub", "keras-hub", "keras-hub>=0.32")
    state = torch_state(name, (32, 32, 3), include_top=False)
    folder = _hub_preset(tmp_path, name, state)
    reference = keras_hub.models.Backbone.from_preset(str(folder))
    model = cnnzoo.create_model(name, weights=str(folder / "model.safetensors"),
                                input_shape=(32, 32, 3), include_top=False)
    x = _images(32)
    _close(reference((x / 255.0 - MEAN) / STD), model.predict(x, verbose=0))


def _np_conv3x3(x, w, b):
    # torchvision's Conv2d(3, padding=1) on NHWC, w in OIHW.
    from numpy.lib.stride_tricks import sliding_window_view

    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    win = sliding_window_view(pad, (3, 3), axis=(1, 2))  # N, H, W, C, 3, 3
    return np.einsum("nhwcij,ocij->nhwo", win, w, optimize=True) + b


@pytest.mark.parametrize("form", ["timm", "torchvision"])
def test_timm_vgg_bn_equals_a_numpy_reference_of_torchvision(tmp_path, form):
    """keras-hub has no VGG with batch norm: each torchvision block in NumPy is the reference.

    Every block (conv, batch norm, ReLU, [max pool]) and the head are
    computed in NumPy from the previous layer's cnnzoo output; the head's
    fc1 reads the channels-first flatten, in timm's 4-D form or
    torchvision's `classifier.0`.
    """
    size = 64  # a 2x2 last map, so that the flatten order matters
    state = torch_state("vgg11_bn", (size, size, 3))
    fc1 = state.pop("pre_logits.fc1.weight")
    if form == "timm":
        state["pre_logits.fc1.weight"] = fc1.reshape(4096, 512, 2, 2)
    else:
        state["classifier.0.weight"] = fc1
        state["classifier.0.bias"] = state.pop("pre_logits.fc1.bias")
        for old, new in (("pre_logits.fc2", "classifier.3"), ("head.fc", "classifier.6")):
            state[f"{new}.weight"] = state.pop(f"{old}.weight").reshape(4096 if new[-1] == "3"
                                                                         else 1000, -1)
            state[f"{new}.bias"] = state.pop(f"{old}.bias")
    # timm's fc1 is a 7x7 convolution: a 2x2 one here; its flattened form is (out, C*H*W).
    fc1_flat = fc1.reshape(4096, -1)
    path = save_torch(state, tmp_path / "vgg11_bn.safetensors")
    model = cnnzoo.create_model("vgg11_bn", weights=path, input_shape=(size, size, 3),
                                classifier_activation=None)
    names = ["block1_pool", "block2_pool", "block3_act1", "block3_pool", "block4_act1",
             "block4_pool", "block5_act1", "block5_pool", "fc1_act", "predictions"]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    x = _images(size, n=1)
    outs = [np.asarray(o) for o in probe.predict(x, verbose=0)]
    table = convert._timm_vgg_map("vgg11_bn")
    prev = (x / 255.0 - MEAN) / STD
    convs = [f"block{s}_conv{i}" for s, i in ((1, 1), (2, 1), (3, 1), (3, 2), (4, 1), (4, 2),
                                              (5, 1), (5, 2))]
    for conv, out, name in zip(convs, outs, names):
        k, n = table[conv], table[conv.replace("conv", "bn")]
        y = _np_conv3x3(prev, state[f"{k}.weight"], state[f"{k}.bias"])
        y = ((y - state[f"{n}.running_mean"]) / np.sqrt(state[f"{n}.running_var"] + 1e-5)
             * state[f"{n}.weight"] + state[f"{n}.bias"])
        y = np.maximum(y, 0)
        if name.endswith("pool"):
            h, w = y.shape[1] // 2, y.shape[2] // 2
            y = y.reshape(y.shape[0], h, 2, w, 2, -1).max(axis=(2, 4))
        _close(y, out)
        prev = out
    flat = prev.transpose(0, 3, 1, 2).reshape(1, -1)  # torch.flatten of NCHW
    _close(np.maximum(flat @ fc1_flat.T + (state.get("pre_logits.fc1.bias")
                                           if form == "timm" else state["classifier.0.bias"]),
                      0), outs[-2])


# -- errors -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    return save_torch(torch_state("resnet18"), tmp_path_factory.mktemp("w") / "r18.safetensors")


def test_a_model_without_weights_lists_those_with():
    with pytest.raises(ValueError, match=r"Models with weights: densenet121, .*resnet50.*"
                                         r"Received: weights='imagenet'"):
        cnnzoo.create_model("lenet5", weights="imagenet")
    with pytest.raises(ValueError, match="one of its sets: tv_in1k, tv2_in1k, keras_imagenet"):
        cnnzoo.create_model("resnet50", weights="tv3_in1k")


@pytest.mark.parametrize("damage,match", [
    ("missing", r"no tensor `layer2.0.conv1.weight` \(for cnnzoo's layer `conv3_block1_conv1`\)"),
    ("extra", r"1 tensor\(s\) that cnnzoo's `resnet18` has no place for, the first `extra.conv`"),
    ("shape", r"tensor `layer1.0.conv1` does not fit cnnzoo's layer `conv2_block1_conv1`"),
])
def test_a_file_that_does_not_fit_names_the_first_tensor(tmp_path, damage, match):
    state = torch_state("resnet18")
    if damage == "missing":
        del state["layer2.0.conv1.weight"]
    elif damage == "extra":
        state["extra.conv.weight"] = np.zeros((1,), "float32")
    else:
        state["layer1.0.conv1.weight"] = np.zeros((64, 64, 1, 1), "float32")
    path = save_torch(state, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match=match):
        cnnzoo.create_model("resnet18", weights=path, input_shape=(32, 32, 3))


def test_conventions_and_sizes_the_weights_fix():
    with pytest.raises(ValueError, match=r"needs `stride_in_1x1=True`.*Received: stride_in_1x1=False"):
        cnnzoo.create_model("resnet50", weights="keras_imagenet", stride_in_1x1=False)
    with pytest.raises(ValueError, match=r"takes 224x224 images: pass input_shape=\(224, 224, 3\), "
                                         r"or include_top=False"):
        cnnzoo.create_model("vgg16", weights="imagenet", input_shape=(64, 64, 3))


# -- download and cache -------------------------------------------------------------------

def test_keras_file_downloads_into_the_keras_cache_and_checks_the_md5(tmp_path, monkeypatch):
    origin = tmp_path / "origin" / "w.h5"
    origin.parent.mkdir()
    origin.write_bytes(b"weights")
    md5 = sources.file_hash(origin)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    path = sources.keras_file(origin.as_uri(), md5)
    assert path == str(tmp_path / "home" / "models" / "w.h5")
    assert open(path, "rb").read() == b"weights"
    origin.unlink()  # cached now: no second download
    assert sources.keras_file(origin.as_uri(), md5) == path
    with open(path, "wb") as f:
        f.write(b"tampered")
    with pytest.raises(ValueError, match=rf"has MD5 {sources.file_hash(path)}, not the {md5}.*"
                                         r"not used"):
        sources.keras_file(origin.as_uri(), md5)


def test_keras_file_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    url = (tmp_path / "nowhere" / "w.h5").as_uri()
    with pytest.raises(ValueError) as e:
        sources.keras_file(url, "0" * 32)
    message = str(e.value)
    assert "\n" not in message and url in message
    assert os.path.join(str(tmp_path), "models", "w.h5") in message


def _fake_hub(monkeypatch, cache):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_hub_file_offline_names_the_hub_id_and_path_and_reads_it_there(tmp_path, monkeypatch,
                                                                       resnet18_file):
    _fake_hub(monkeypatch, tmp_path / "hub")
    with pytest.raises(ValueError) as e:
        cnnzoo.create_model("resnet18", weights="tv_in1k", input_shape=(32, 32, 3))
    message = str(e.value)
    where = tmp_path / "hub" / "models--timm--resnet18.tv_in1k" / "snapshots" / "main"
    assert "\n" not in message and "timm/resnet18.tv_in1k" in message
    assert str(where / "model.safetensors") in message
    # Copied where the message says, the set loads (no network: offline).
    where.mkdir(parents=True)
    os.link(resnet18_file, where / "model.safetensors")
    model = cnnzoo.create_model("resnet18", weights="tv_in1k", input_shape=(32, 32, 3),
                                classifier_activation=None)
    direct = cnnzoo.create_model("resnet18", weights=resnet18_file, input_shape=(32, 32, 3),
                                 classifier_activation=None)
    x = _images(32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), direct.predict(x, verbose=0))


def test_the_weights_sets_are_described():
    for name in cnnzoo.weights.models_with_weights():
        for set_name, spec in cnnzoo.model_info(name)["weights"].items():
            assert spec["top1"] > 60 and spec["input_size"] == 224 and spec["license"]
            assert spec["preprocessing"]["mode"] in ("caffe", "tf", "torch")
            if spec["layout"] == "keras_applications":
                assert all(f["url"].startswith("https://storage.googleapis.com/")
                           for f in spec["files"].values())
            else:
                assert spec["hub_id"] == f"timm/{name}.{set_name}"


# -- adaptation ---------------------------------------------------------------------------

def test_first_kernel_adapts_as_timm():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype("float32")
    np.testing.assert_allclose(convert.adapt_first_kernel(kernel, 1), kernel.sum(2, keepdims=True))
    five = convert.adapt_first_kernel(kernel, 5)
    np.testing.assert_allclose(five[:, :, 3:5], kernel[:, :, :2] * 0.6, rtol=1e-6)
    np.testing.assert_allclose(convert.adapt_first_kernel(kernel, 3, bgr=True),
                               kernel[:, :, ::-1])


def test_new_head_and_grey_input(resnet18_file, caplog):
    state_model = cnnzoo.create_model("resnet18", weights=resnet18_file, input_shape=(32, 32, 3))
    with caplog.at_level("INFO", logger="cnnzoo.weights"):
        grey = cnnzoo.create_model("resnet18", weights=resnet18_file, input_shape=(32, 32, 1),
                                   num_classes=10)
    assert [r.getMessage() for r in caplog.records] == [
        "resnet18: the backbone's weights are loaded; a new classifier is initialised"]
    rgb_kernel = state_model.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_allclose(grey.get_layer("stem_conv").get_weights()[0],
                               rgb_kernel.sum(2, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(grey.get_layer("conv5_block2_bn2").get_weights()[2],
                                  state_model.get_layer("conv5_block2_bn2").get_weights()[2])
    assert grey.predict(_images(32, channels=1), verbose=0).shape == (2, 10)


@pytest.mark.parametrize("name,size,knobs", [
    ("resnet18", 32, {"drop_path_rate": 0.2, "block_dropout_rate": 0.3}),
    ("vgg11", 32, {"dropout_rate": 0.4, "block_dropout_rate": 0.2, "dropout_type": "spatial"}),
    ("densenet121", 32, {"block_dropout_rate": 0.2, "implementation": "primitive"}),
])
def test_dropout_added_to_a_pretrained_model_changes_nothing_at_inference(tmp_path, name, size,
                                                                          knobs):
    path = save_torch(torch_state(name, (size, size, 3)), tmp_path / "w.safetensors")
    plain = cnnzoo.create_model(name, weights=path, input_shape=(size, size, 3),
                                dropout_rate=0.0, classifier_activation=None)
    knobbed = cnnzoo.create_model(name, weights=path, input_shape=(size, size, 3),
                                  classifier_activation=None, tunable_dropout=True, **knobs)
    x = _images(size)
    np.testing.assert_allclose(knobbed.predict(x, verbose=0), plain.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6 * float(np.abs(plain.predict(x, verbose=0)).max()))


def test_mobilenet_v2_knobs_on_keras_weights(tmp_path):
    reference = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "m.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.save(path)
    plain = cnnzoo.create_model("mobilenet_v2", weights=path, input_shape=(32, 32, 3))
    knobbed = cnnzoo.create_model("mobilenet_v2", weights=path, input_shape=(32, 32, 3),
                                  dropout_rate=0.5, block_dropout_rate=0.3, drop_path_rate=0.2)
    x = _images(32)
    np.testing.assert_allclose(knobbed.predict(x, verbose=0), plain.predict(x, verbose=0),
                               atol=1e-6)


def test_another_activation_warns_once(resnet18_file):
    with pytest.warns(UserWarning, match="trained with relu; with activation='gelu'") as record:
        cnnzoo.create_model("resnet18", weights=resnet18_file, input_shape=(32, 32, 3),
                            activation="gelu")
    assert len([w for w in record if "trained with" in str(w.message)]) == 1


@pytest.mark.multibackend
def test_pretrained_model_round_trips_and_runs_in_bfloat16(tmp_path, resnet18_file, monkeypatch):
    model = cnnzoo.create_model("resnet18", weights=resnet18_file, input_shape=(32, 32, 3),
                                classifier_activation=None)
    path = str(tmp_path / "m.keras")
    model.save(path)
    # No cache and no network: loading must not fetch anything.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    _fake_hub(monkeypatch, tmp_path / "empty_hub")
    again = keras.saving.load_model(path, safe_mode=True,
                                    custom_objects=cnnzoo.layers.custom_objects())
    x = _images(32)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-4)
    assert again.get_layer("preprocessing").get_config()["mode"] == "torch"
    keras.config.set_dtype_policy("mixed_bfloat16")
    half = cnnzoo.create_model("resnet18", weights=resnet18_file, input_shape=(32, 32, 3),
                               classifier_activation=None)
    got = half.predict(x, verbose=0)
    # bfloat16 keeps 8 bits of mantissa: agreement in the top class and to a few percent.
    assert np.abs(got - expected).max() <= 0.1 * np.abs(expected).max()


def test_preprocessing_modes_match_keras_applications():
    x = _images(8)
    for mode, module in (("caffe", "vgg16"), ("tf", "mobilenet_v2"), ("torch", "densenet")):
        ours = Preprocessing(mode)(x)
        theirs = getattr(keras.applications, module).preprocess_input(x.copy())
        np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-6, atol=1e-4)


# -- command line ---------------------------------------------------------------------------

def test_cli_lists_shows_and_loads_weights(capsys, resnet18_file):
    from cnnzoo.cli import main

    assert main(["list", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "tv_in1k, tv2_in1k, keras_imagenet" in out
    assert "lenet5" not in out and "14 models" in out
    assert main(["info", "mobilenet_v2"]) == 0
    out = capsys.readouterr().out
    assert "keras_imagenet: keras.applications" in out and '{"padding": "tensorflow"}' in out
    assert main(["summary", "resnet18", "--input-shape", "32,32,3", "--weights",
                 resnet18_file]) == 0
    assert "│ preprocessing" in capsys.readouterr().out


def test_pipeline_does_not_rescale_twice(resnet18_file):
    from cnnzoo.pipeline import build_classifier

    model = build_classifier("resnet18", (32, 32, 3), 10, weights=resnet18_file)
    inner = model.get_layer("resnet18")
    assert "rescale" not in [layer.name for layer in model.layers]
    assert inner.get_layer("preprocessing").get_config()["mode"] == "torch"
