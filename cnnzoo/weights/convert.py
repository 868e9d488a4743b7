"""Per-family converters: a publisher's tensors into cnnzoo's layers, exactly.

A converter is a name map (cnnzoo layer -> the publisher's layer) per
family and layout; `convert` then turns each source tensor into the Keras
layout and folds what cnnzoo's layers do differently:

- PyTorch's OIHW convolution kernels to HWIO, depthwise `(C, 1, kh, kw)` to
  `(kh, kw, C, 1)`, linear `(out, in)` to `(in, out)`;
- a convolution bias before batch norm (keras.applications' ResNet) into
  the moving mean: `bn(conv + b)` with mean `m` equals `bn(conv)` with mean
  `m - b`;
- another batch-norm epsilon into the moving variance, `var + eps_src -
  eps_dst` (keras.applications: 1.001e-5 for ResNet and DenseNet, 1e-3 for
  MobileNetV2; cnnzoo's 1e-5);
- torchvision VGG's channels-first flatten in `fc1` (timm's `pre_logits.fc1`
  7x7 convolution, or torchvision's `classifier.0`) to Keras's
  channels-last `Flatten`;
- the first convolution to another channel count, as timm's
  `adapt_input_conv` (see `adapt_first_kernel`).

What cannot be folded (keras.applications MobileNetV2's TensorFlow padding,
ResNet v1's stride on the first 1x1) is a convention of the weights set:
`create_model` builds that architecture instead.
"""

import re

import numpy as np

from cnnzoo import _validation as v
from cnnzoo.blocks import BN_EPSILON

# The batch-norm epsilon each source's layers were trained with.
SOURCE_EPSILON = {
    ("keras_applications", "resnet"): 1.001e-5,
    ("keras_applications", "densenet"): 1.001e-5,
    ("keras_applications", "mobilenet_v2"): 1e-3,
    ("keras_applications", "vgg"): None,
}
TORCH_EPSILON = 1e-5
HEAD_LAYERS = ("fc1_dense", "fc2_dense", "predictions")


# -- name maps: cnnzoo layer name -> the publisher's layer name ---------------

def _keras_resnet(name):
    if name.startswith("stem_"):
        return name.replace("stem_", "conv1_")
    m = re.fullmatch(r"(conv\d_block\d+)_(conv|bn)(\d)", name)
    if m:
        return f"{m[1]}_{m[3]}_{m[2]}"
    return name  # *_0_conv, *_0_bn, predictions


def _keras_densenet(name):
    if name.startswith("stem_"):
        return name.replace("stem_", "conv1_")
    m = re.fullmatch(r"(conv\d_block\d+)_(bn|conv)(\d)", name)
    if m:
        # keras.applications: 0_bn, 1_conv, 1_bn, 2_conv.
        index = {"bn1": "0_bn", "conv1": "1_conv", "bn2": "1_bn", "conv2": "2_conv"}
        return f"{m[1]}_{index[m[2] + m[3]]}"
    m = re.fullmatch(r"transition(\d)_(bn|conv)", name)
    if m:
        return f"pool{int(m[1]) + 1}_{m[2]}"
    return {"final_bn": "bn"}.get(name, name)


def _keras_mobilenet_v2(name):
    fixed = {"stem_conv": "Conv1", "stem_bn": "bn_Conv1", "head_conv": "Conv_1",
             "head_bn": "Conv_1_bn"}
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"block(\d+)_(dwconv|dwbn|conv_expand|bn_expand|conv_project|bn_project)",
                     name)
    if m:
        i = int(m[1]) - 1
        prefix = "expanded_conv" if i == 0 else f"block_{i}"
        part = {"dwconv": "depthwise", "dwbn": "depthwise_BN", "conv_expand": "expand",
                "bn_expand": "expand_BN", "conv_project": "project",
                "bn_project": "project_BN"}[m[2]]
        return f"{prefix}_{part}"
    return name


def _keras_vgg(name):
    return {"fc1_dense": "fc1", "fc2_dense": "fc2"}.get(name, name)


def _timm_resnet(name):
    fixed = {"stem_conv": "conv1", "stem_bn": "bn1", "predictions": "fc"}
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"conv(\d)_block(\d+)_(?:(conv|bn)(\d)|0_(conv|bn))", name)
    if not m:
        return name
    prefix = f"layer{int(m[1]) - 1}.{int(m[2]) - 1}"
    if m[5]:
        return f"{prefix}.downsample.{0 if m[5] == 'conv' else 1}"
    return f"{prefix}.{m[3]}{m[4]}"


def _timm_densenet(name):
    fixed = {"stem_conv": "features.conv0", "stem_bn": "features.norm0",
             "final_bn": "features.norm5", "predictions": "classifier"}
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"conv(\d)_block(\d+)_(bn|conv)(\d)", name)
    if m:
        kind = "norm" if m[3] == "bn" else "conv"
        return f"features.denseblock{int(m[1]) - 1}.denselayer{m[2]}.{kind}{m[4]}"
    m = re.fullmatch(r"transition(\d)_(bn|conv)", name)
    if m:
        return f"features.transition{m[1]}.{'norm' if m[2] == 'bn' else 'conv'}"
    return name


def _timm_vgg_map(model_name):
    """torchvision's `features.{i}` indices for VGG (`timm` keeps them), from the cfg table."""
    from cnnzoo.models.vgg import CFGS

    batch_norm = model_name.endswith("_bn")
    table, index, stage, conv = {}, 0, 1, 0
    for item in CFGS[model_name.replace("_bn", "")]:
        if item == "M":
            index, stage, conv = index + 1, stage + 1, 0
            continue
        conv += 1
        table[f"block{stage}_conv{conv}"] = f"features.{index}"
        if batch_norm:
            table[f"block{stage}_bn{conv}"] = f"features.{index + 1}"
        index += 3 if batch_norm else 2
    return table


def name_map(family, layout, model_name):
    """The function cnnzoo layer name -> source layer name, or `None` without a converter."""
    if layout == "keras_applications":
        return {"resnet": _keras_resnet, "densenet": _keras_densenet,
                "mobilenet_v2": _keras_mobilenet_v2, "vgg": _keras_vgg}.get(family)
    if layout == "timm":
        if family == "resnet":
            return _timm_resnet
        if family == "densenet":
            return _timm_densenet
        if family == "vgg":
            table = _timm_vgg_map(model_name)
            return lambda name: table.get(name, name)
    return None


# timm's VGG head (a 7x7 and a 1x1 convolution, then `head.fc`) and
# torchvision's (`classifier.0/3/6`): either is read.
_VGG_HEAD_ALTERNATIVES = {"fc1_dense": ("pre_logits.fc1", "classifier.0"),
                          "fc2_dense": ("pre_logits.fc2", "classifier.3"),
                          "predictions": ("head.fc", "classifier.6")}


# -- tensors --------------------------------------------------------------------

def adapt_first_kernel(kernel, channels, bgr=False):
    """The first convolution's HWIO kernel for `channels` input channels (timm's rule).

    1 channel: the sum over RGB (a grey image then gives what its RGB copy
    would). n channels: RGB repeated to n and scaled by 3/n, so that the
    activations keep their scale. A kernel trained on BGR input (caffe
    preprocessing) is flipped to RGB first; the `Preprocessing` layer then
    does not flip.
    """
    if bgr:
        kernel = kernel[:, :, ::-1, :]
    if channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    reps = -(-channels // 3)
    return np.tile(kernel, (1, 1, reps, 1))[:, :, :channels, :] * (3.0 / channels)


class _Source:
    """The file's tensors, handed out by name, so that unused ones can be named."""

    def __init__(self, tensors, path):
        self.tensors = tensors
        self.path = path
        self.used = set()

    def has(self, layer):
        return layer in self.tensors

    def get(self, layer, param, target):
        if layer not in self.tensors or param not in self.tensors[layer]:
            v.fail(f"The weights file has no tensor `{layer}.{param}` (for cnnzoo's layer "
                   f"`{target}`): is it a file of another model, or of another layout?",
                   "weights", self.path)
        self.used.add(layer)
        return np.asarray(self.tensors[layer][param], dtype="float32")

    def param(self, layer, *names):
        return next((n for n in names if n in self.tensors.get(layer, {})), names[0])


def _check(layer, source_key, arrays, path):
    for variable, array in zip(layer.weights, arrays):
        if tuple(variable.shape) != tuple(array.shape):
            v.fail(f"The weights file's tensor `{source_key}` does not fit cnnzoo's layer "
                   f"`{layer.name}` (`{variable.name}`): shape {tuple(array.shape)} after "
                   f"conversion, the model's is {tuple(variable.shape)}.", "weights", path)


def convert(model, *, model_name, family, layout, tensors, path, load_head, bgr=False):
    """The Keras weights of every convolution, batch norm and dense layer, from a file's tensors.

    Args:
        model: the freshly built cnnzoo model.
        model_name, family: the registry's.
        layout: `"keras_applications"` or `"timm"`.
        tensors: `{layer: {parameter: array}}` from `readers`.
        path: the file, for messages.
        load_head: load the classifier (`predictions`); `False` where a new
            head is initialised (another `num_classes`).
        bgr: the first kernel was trained on BGR input (keras.applications'
            caffe preprocessing), for `adapt_first_kernel`.

    Returns:
        A list of `(layer, arrays)`, every shape checked; nothing is
        assigned yet.

    Raises:
        ValueError: naming the first tensor that is missing, extra or of the
            wrong shape.
    """
    import keras

    mapping = name_map(family, layout, model_name)
    source = _Source(tensors, path)
    torch = layout == "timm"
    eps_src = TORCH_EPSILON if torch else SOURCE_EPSILON.get((layout, family))
    param = {"kernel": "weight" if torch else "kernel", "bias": "bias",
             "depthwise": "weight" if torch else "depthwise_kernel",
             "gamma": "weight" if torch else "gamma", "beta": "bias" if torch else "beta",
             "mean": "running_mean" if torch else "moving_mean",
             "var": "running_var" if torch else "moving_variance"}
    kinds = (keras.layers.DepthwiseConv2D, keras.layers.Conv2D,
             keras.layers.BatchNormalization, keras.layers.Dense)
    layers = [layer for layer in model.layers if isinstance(layer, kinds)]
    first_conv = next(layer for layer in layers if isinstance(layer, keras.layers.Conv2D))
    plan, folded_bias = [], {}
    for layer in layers:
        if layer.name == "predictions" and not load_head:
            continue
        key = mapping(layer.name)
        if family == "vgg" and torch and layer.name in _VGG_HEAD_ALTERNATIVES:
            key = next((k for k in _VGG_HEAD_ALTERNATIVES[layer.name] if source.has(k)),
                       _VGG_HEAD_ALTERNATIVES[layer.name][0])
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            # Keras 2 files (the published ones) say depthwise_kernel, Keras 3's kernel.
            w = source.get(key, source.param(key, param["depthwise"], "kernel"), layer.name)
            arrays = [w.transpose(2, 3, 0, 1) if torch else w]
        elif isinstance(layer, keras.layers.Conv2D):
            w = source.get(key, param["kernel"], layer.name)
            w = w.transpose(2, 3, 1, 0) if torch else w
            if layer is first_conv and w.shape[2] != layer.kernel.shape[2] and w.shape[2] == 3:
                w = adapt_first_kernel(w, layer.kernel.shape[2], bgr=bgr)
            arrays = [w]
            has_bias = "bias" in tensors.get(key, {})
            if layer.use_bias:
                arrays.append(source.get(key, "bias", layer.name))
            elif has_bias:
                # A bias before batch norm: folded into the next batch norm's mean.
                bn_name = re.sub(r"conv(?!.*conv)", "bn", layer.name)
                folded_bias[bn_name] = source.get(key, "bias", layer.name)
        elif isinstance(layer, keras.layers.BatchNormalization):
            mean = source.get(key, param["mean"], layer.name)
            var = source.get(key, param["var"], layer.name)
            if layer.name in folded_bias:
                mean = mean - folded_bias.pop(layer.name)
            if eps_src is not None and eps_src != BN_EPSILON:
                var = var + np.float32(eps_src - BN_EPSILON)
            arrays = [source.get(key, param["gamma"], layer.name),
                      source.get(key, param["beta"], layer.name), mean, var]
        else:  # Dense
            w = source.get(key, param["kernel"], layer.name)
            if torch and w.ndim == 4:
                # timm's VGG head: a (out, C, H, W) convolution over the last map.
                w = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
            elif torch and layer.name == "fc1_dense" and family == "vgg":
                # torchvision's classifier.0: (out, C*H*W) over a channels-first flatten.
                w = w.reshape(w.shape[0], 512, -1).transpose(2, 1, 0).reshape(-1, w.shape[0])
            elif torch:
                w = w.reshape(w.shape[0], -1).T
            arrays = [w, source.get(key, "bias", layer.name)]
        _check(layer, f"{key}", arrays, path)
        plan.append((layer, arrays))
    head = set()
    for name in HEAD_LAYERS:
        head.add(mapping(name))
        head.update(_VGG_HEAD_ALTERNATIVES.get(name, ()) if torch else ())
    extra = [k for k in tensors if k not in source.used and k not in head]
    if extra:
        v.fail(f"The weights file has {len(extra)} tensor(s) that cnnzoo's `{model_name}` has "
               f"no place for, the first `{extra[0]}`: is it a file of another model?",
               "weights", path)
    return plan


def assign(plan):
    """Sets every planned layer's weights (after `convert` has checked them all)."""
    for layer, arrays in plan:
        layer.set_weights(arrays)
