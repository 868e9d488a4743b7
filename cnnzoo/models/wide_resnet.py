"""Wide Residual Networks (CIFAR style).

Reference:
    - [Wide Residual Networks](https://arxiv.org/abs/1605.07146)
      (Zagoruyko & Komodakis, BMVC 2016); code: szagoruyko/wide-residual-networks
"""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import (NORMALIZED_SEARCH_SPACE, min_input_size, register_model,
                                     total_stride)

# Architectures as data: depth and widening factor (WRN-d-k). Depth 6n + 4:
# n blocks in each of three stages of 16k, 32k, 64k channels.
CFGS = {
    "wide_resnet28_10": (28, 10),
}
BASE_WIDTHS = (16, 32, 64)
STAGE_STRIDES = (1, 2, 2)
STEM_FILTERS = 16
# A 3x3 stem, then the stride-2 first block of stages 2 and 3 (pad 1).
OPS = [(3, 1, 1)] + [(3, s, 1) for s in STAGE_STRIDES if s > 1]
MIN_INPUT = max(min_input_size(OPS), total_stride(OPS))
PAPER = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016"
# The authors' code initializes convolutions with kaiming_normal_ (fan_in).
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_in", "distribution": "untruncated_normal"}}


def _blocks_per_stage(depth, width):
    """Depth 6n + 4: n blocks in each stage."""
    return (depth - 4) // 6


def _wide_resnet(cfg, depth, width):
    """3x3 stem, three stages of pre-activation wide blocks, BN-act, average pool, classifier.

    Each block is BN-act-conv3x3, dropout (the stage's `block_dropout_rate`,
    0.3 in the paper), BN-act-conv3x3, plus the shortcut (a 1x1 convolution
    of the pre-activated input where the shape changes). Convolutions have no
    bias, as in the authors' code.
    """
    n = _blocks_per_stage(depth, width)
    blocks = Blocks(cfg, kernel_initializer=CONV_INIT, num_residual_blocks=len(BASE_WIDTHS) * n)
    inputs = blocks.inputs()
    x = blocks.conv(inputs, STEM_FILTERS, 3, "stem_conv", use_bias=False)
    for stage, (base, stride) in enumerate(zip(BASE_WIDTHS, STAGE_STRIDES)):
        for b in range(n):
            x = blocks.preact_wide_block(x, base * width, f"conv{stage + 2}_block{b + 1}",
                                         stage, strides=stride if b == 0 else 1)
    # Pre-activation blocks end on the addition: the last BN-act comes here.
    x = blocks.bn(x, "final_bn")
    x = blocks.act(x, "final_act")
    x = blocks.pooled_head(x, default_pool="avg")
    return blocks.model(inputs, x)


@register_model(
    family="wide_resnet",
    paper=PAPER,
    default_input_shape=(32, 32, 3),
    default_num_classes=10,
    min_input_size=MIN_INPUT,
    stages=3,
    params=36_497_146,
    trainable_params=36_479_194,
    reference="szagoruyko/wide-residual-networks (the authors' code), WRN-28-10 on "
              "CIFAR-10: 36,479,194 trainable (the paper's 36.5M)",
    block_dropout_rate=0.3,
    dropout_placement="0.3 between the two 3x3 convolutions of every block",
    block_dropout_layers=[_blocks_per_stage(*CFGS["wide_resnet28_10"])] * len(BASE_WIDTHS),
    head_dropout_layers=1,
    residual_blocks=len(BASE_WIDTHS) * _blocks_per_stage(*CFGS["wide_resnet28_10"]),
    search_space=NORMALIZED_SEARCH_SPACE,
)
def wide_resnet28_10(cfg):
    """WRN-28-10 for 32x32 images: 3 stages of 4 pre-activation blocks, 160-320-640 channels."""
    depth, width = CFGS["wide_resnet28_10"]
    return _wide_resnet(cfg, depth, width)
