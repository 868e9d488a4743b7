"""VGG, with and without batch normalization.

Reference:
    - [Very Deep Convolutional Networks for Large-Scale Image Recognition](
      https://arxiv.org/abs/1409.1556) (Simonyan & Zisserman, ICLR 2015)
"""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import min_input_size, register_model
from cnnzoo.weights import sets

# Architectures as data: output channels of each 3x3 convolution, "M" a 2x2
# max pool that ends a stage (torchvision's and timm's table).
CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
# Five 2x2 pools; the 3x3 convolutions keep the size.
MIN_INPUT = min_input_size([(2, 2, "valid")] * 5)
PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"


# Published weights, per model; the first set is `weights="imagenet"`.
_TV_TOP1 = {"vgg11": 69.020, "vgg13": 69.928, "vgg16": 71.592, "vgg19": 72.376,
            "vgg11_bn": 70.370, "vgg13_bn": 71.586, "vgg16_bn": 73.360, "vgg19_bn": 74.218}
_KERAS_VGG = {"preprocessing": sets.CAFFE,
              "license": "CC BY 4.0 (VGG, University of Oxford; ported by keras.applications)"}
WEIGHTS = {name: {"tv_in1k": sets.timm_hub(name, "tv_in1k", top1)}
           for name, top1 in _TV_TOP1.items()}
WEIGHTS["vgg16"]["keras_imagenet"] = sets.keras_applications(
    "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels", "64373286793e3c8b2b4e3219cbf3544b",
    "6d6bbae143d832006294945121d1f1fc", 71.3, **_KERAS_VGG)
WEIGHTS["vgg19"]["keras_imagenet"] = sets.keras_applications(
    "vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels", "cbe5617147190e668d6c5d5026f83318",
    "253f8cb515780f3b799900260a226db6", 71.3, **_KERAS_VGG)


def _vgg(cfg, layers, batch_norm):
    """Stages of 3x3 conv blocks, then fc-4096 x2 with dropout, then the classifier.

    Block dropout (the stage's `block_dropout_rate`) follows the activation
    of each stage's last convolution, before its pool.
    """
    blocks = Blocks(cfg, kernel_initializer="he_normal")
    inputs = blocks.inputs()
    x = inputs
    stage, index = 0, 0
    for i, item in enumerate(layers):
        if item == "M":
            continue
        index += 1
        ends_stage = layers[i + 1] == "M"
        x = blocks.conv_block(
            # torchvision keeps the convolution bias before batch norm too.
            x, item, 3, f"block{stage + 1}", index, batch_norm=batch_norm, use_bias=True,
            dropout_rate=blocks.stage_rate(stage) if ends_stage else 0.0,
            pool="max" if ends_stage else None,
        )
        if ends_stage:
            stage, index = stage + 1, 0
    x = blocks.flatten_head(x, [4096, 4096])
    return blocks.model(inputs, x)


def _registered(params, reference, trainable=None):
    """`register_model` with what every VGG shares.

    Counts at 224x224x3, 1000 classes. Batch-norm variants: torchvision
    counts only trainable weights (the statistics are buffers), so its number
    is the trainable count; the total adds 2 statistics per channel.
    """
    shared = dict(
        family="vgg", paper=PAPER, default_input_shape=(224, 224, 3),
        min_input_size=MIN_INPUT, stages=5, params=params, trainable_params=trainable,
        reference=reference, dropout_rate=0.5,
        dropout_placement="0.5 after the activations of fc1 and fc2",
        # Each stage's last convolution; fc1 and fc2.
        block_dropout_layers=[1] * 5, head_dropout_layers=2,
        stage_layers=[(f"block{s + 1}_",) for s in range(5)],
    )

    def decorate(fn):  # and the published weights of the model it registers
        return register_model(weights=WEIGHTS.get(fn.__name__), **shared)(fn)

    return decorate


@_registered(132_863_336, "torchvision.models.vgg11: 132,863,336")
def vgg11(cfg):
    """VGG11 (dropout 0.5 after fc1 and fc2)."""
    return _vgg(cfg, CFGS["vgg11"], batch_norm=False)


@_registered(133_047_848, "torchvision.models.vgg13: 133,047,848")
def vgg13(cfg):
    """VGG13 (dropout 0.5 after fc1 and fc2)."""
    return _vgg(cfg, CFGS["vgg13"], batch_norm=False)


@_registered(138_357_544, "keras.applications.VGG16: 138,357,544")
def vgg16(cfg):
    """VGG16 (dropout 0.5 after fc1 and fc2)."""
    return _vgg(cfg, CFGS["vgg16"], batch_norm=False)


@_registered(143_667_240, "keras.applications.VGG19: 143,667,240")
def vgg19(cfg):
    """VGG19 (dropout 0.5 after fc1 and fc2)."""
    return _vgg(cfg, CFGS["vgg19"], batch_norm=False)


@_registered(132_874_344, "torchvision.models.vgg11_bn: 132,868,840 trainable", 132_868_840)
def vgg11_bn(cfg):
    """VGG11 with batch normalization (dropout 0.5 after fc1 and fc2)."""
    return _vgg(cfg, CFGS["vgg11"], batch_norm=True)


@_registered(133_059_624, "torchvision.models.vgg13_bn: 133,053,736 trainable", 133_053_736)
def vgg13_bn(cfg):
    """VGG13 with batch normalization (dropout 0.5 after fc1 and fc2)."""
    return _vgg(cfg, CFGS["vgg13"], batch_norm=True)


@_registered(138_374_440, "torchvision.models.vgg16_bn: 138,365,992 trainable", 138_365_992)
def vgg16_bn(cfg):
    """VGG16 with batch normalization (dropout 0.5 after fc1 and fc2)."""
    return _vgg(cfg, CFGS["vgg16"], batch_norm=True)


@_registered(143_689_256, "torchvision.models.vgg19_bn: 143,678,248 trainable", 143_678_248)
def vgg19_bn(cfg):
    """VGG19 with batch normalization (dropout 0.5 after fc1 and fc2)."""
    return _vgg(cfg, CFGS["vgg19"], batch_norm=True)
