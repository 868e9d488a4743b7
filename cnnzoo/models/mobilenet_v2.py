"""MobileNetV2.

Reference:
    - [MobileNetV2: Inverted Residuals and Linear Bottlenecks](
      https://arxiv.org/abs/1801.04381) (Sandler et al., CVPR 2018)
"""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import (NORMALIZED_SEARCH_SPACE, min_input_size, register_model,
                                     total_stride)
from cnnzoo.weights import sets

# Architectures as data: the paper's Table 2, one row per bottleneck group:
# (expansion t, output channels c, repeats n, stride s of the first block).
CFG = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
STEM_FILTERS = 32
LAST_FILTERS = 1280
# 3x3/2 stem, then the stride-2 depthwise convolutions (pad 1).
OPS = [(3, 2, 1)] + [(3, s, 1) for _, _, _, s in CFG if s > 1]
MIN_INPUT = max(min_input_size(OPS), total_stride(OPS))
# torchvision's initializer: kaiming_normal_(mode="fan_out").
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}}

# Published weights (width 1.0, 224). keras.applications pads its stride-2
# convolutions as TensorFlow's "same" (bottom and right only at even sizes),
# which no weight fold can undo: the weights ask for that padding. Its MD5 is
# None because keras.applications checks none for MobileNetV2.
WEIGHTS = {
    "keras_imagenet": sets.keras_applications(
        "mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224", None, None,
        71.3, preprocessing=sets.TF, conventions={"padding": "tensorflow"},
        license="Apache-2.0 (TensorFlow's models, as keras.applications)",
        notop_stem="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top"),
}


def _num_residual_blocks(cfg, in_channels):
    """Blocks with an identity shortcut (stride 1, same width): those that get stochastic depth."""
    count = 0
    for _, c, n, s in cfg:
        for b in range(n):
            count += int((s if b == 0 else 1) == 1 and in_channels == c)
            in_channels = c
    return count


def _stage_layers(cfg):
    """The blocks of each group (`block1_` ...); the 1x1 convolution to 1280 ends the last."""
    stages, first = [], 1
    for _, _, n, _ in cfg:
        stages.append(tuple(f"block{b}_" for b in range(first, first + n)))
        first += n
    stages[-1] += ("head_conv", "head_bn", "head_act")
    return stages


@register_model(
    family="mobilenet_v2",
    paper="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018",
    default_input_shape=(224, 224, 3),
    min_input_size=MIN_INPUT,
    stages=len(CFG),
    params=3_538_984,
    trainable_params=3_504_872,
    reference="keras.applications.MobileNetV2: 3,538,984; torchvision.models.mobilenet_v2: "
              "3,504,872 trainable",
    dropout_rate=0.2,
    dropout_placement="0.2 before the classifier (torchvision); optional block dropout "
                      "after the depthwise convolution's activation",
    default_activation="relu6",
    block_dropout_layers=[n for _, _, n, _ in CFG],  # one in each block of a group
    head_dropout_layers=1,
    stage_layers=_stage_layers(CFG),
    residual_blocks=_num_residual_blocks(CFG, STEM_FILTERS),
    search_space=NORMALIZED_SEARCH_SPACE,
    # Depthwise convolutions have no bfloat16 kernels on CPUs: slower in it.
    cpu_mixed_bfloat16=False,
    weights=WEIGHTS,
)
def mobilenet_v2(cfg):
    """MobileNetV2 (width 1.0): 17 inverted residual blocks in 7 groups, relu6 by default.

    3x3/2 stem (32), the seven bottleneck groups of the paper's Table 2, a
    1x1 convolution to 1280 channels, global average pool, dropout 0.2 (as
    torchvision), classifier. The hidden activation defaults to the paper's
    `relu6` (when `activation` is not given); the projections stay linear.
    The seven stages of `block_dropout_rate` are the seven groups (dropout
    after the depthwise activation); `drop_path_rate` applies to the ten
    blocks with an identity shortcut.
    """
    blocks = Blocks(cfg, kernel_initializer=CONV_INIT,
                    num_residual_blocks=_num_residual_blocks(CFG, STEM_FILTERS))
    inputs = blocks.inputs()
    x = blocks.conv_block(inputs, STEM_FILTERS, 3, "stem", strides=2,
                          padding=blocks.padding_for(3, 2), batch_norm=True)
    index = 0
    for stage, (t, c, n, s) in enumerate(CFG):
        for b in range(n):
            index += 1
            x = blocks.inverted_residual(x, c, f"block{index}", stage,
                                         strides=s if b == 0 else 1, expansion=t)
    x = blocks.conv_block(x, LAST_FILTERS, 1, "head", batch_norm=True)
    x = blocks.pooled_head(x, default_pool="avg")
    return blocks.model(inputs, x)
