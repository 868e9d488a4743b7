"""DenseNet-BC.

Reference:
    - [Densely Connected Convolutional Networks](https://arxiv.org/abs/1608.06993)
      (Huang et al., CVPR 2017)
"""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import (NORMALIZED_SEARCH_SPACE, min_input_size, register_model,
                                     total_stride)
from cnnzoo.weights import sets

# Architectures as data: growth rate, stem width and dense layers per block.
CFGS = {
    "densenet121": (32, 64, [6, 12, 24, 16]),
}
BN_SIZE = 4  # bottleneck width: 1x1 convolutions give bn_size * growth channels
COMPRESSION = 0.5  # the "C" of DenseNet-BC: transitions halve the channels
# Stem: 7x7/2 (pad 3), 3x3/2 max pool (pad 1); then three 2x2 average pools.
OPS = [(7, 2, 3), (3, 2, 1)] + [(2, 2, "valid")] * 3
MIN_INPUT = max(min_input_size(OPS), total_stride(OPS))
# Published weights; the first set is `weights="imagenet"`.
WEIGHTS = {
    "tv_in1k": sets.timm_hub("densenet121", "tv_in1k", 74.434),
    "keras_imagenet": sets.keras_applications(
        "densenet", "densenet121_weights_tf_dim_ordering_tf_kernels",
        "9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738", 75.0,
        preprocessing=sets.TORCH,
        license="BSD-3-Clause (the authors' released models, ported by keras.applications)"),
}
PAPER = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017"


def _transition(blocks, x, prefix, rate):
    """BN-act-conv1x1 (halving the channels), [dropout], 2x2 average pool."""
    x = blocks.bn(x, f"{prefix}_bn")
    x = blocks.act(x, f"{prefix}_act")
    x = blocks.conv(x, int(x.shape[-1] * COMPRESSION), 1, f"{prefix}_conv", use_bias=False)
    x = blocks.drop(x, rate, f"{prefix}_drop")
    return blocks.pool(x, f"{prefix}_pool", kind="avg", pool_size=2, strides=2)


def _block_dropout_layers(depths):
    """Two convolutions per dense layer, and the transition's after each block but the last."""
    return [2 * n + (i < len(depths) - 1) for i, n in enumerate(depths)]


def _densenet(cfg, growth_rate, stem_filters, depths):
    """Stem, four dense blocks joined by transitions, BN-act, global average pool, classifier.

    `block_dropout_rate` (one value per dense block, 0 by default; the paper
    uses 0.2 without data augmentation) goes after every convolution of the
    block and after its transition's convolution: the paper's "dropout after
    each convolutional layer (except the first one)".
    """
    blocks = Blocks(cfg, kernel_initializer="he_normal")
    inputs = blocks.inputs()
    x = blocks.conv_block(inputs, stem_filters, 7, "stem", strides=2, padding=3,
                          batch_norm=True)
    x = blocks.pool(x, "stem_pool", kind="max", pool_size=3, strides=2, padding=1)
    for stage, depth in enumerate(depths):
        for b in range(depth):
            x = blocks.dense_layer(x, growth_rate, f"conv{stage + 2}_block{b + 1}", stage,
                                   bn_size=BN_SIZE)
        if stage < len(depths) - 1:
            x = _transition(blocks, x, f"transition{stage + 1}", blocks.stage_rate(stage))
    x = blocks.bn(x, "final_bn")
    x = blocks.act(x, "final_act")
    x = blocks.pooled_head(x, default_pool="avg")
    return blocks.model(inputs, x)


@register_model(
    family="densenet",
    paper=PAPER,
    default_input_shape=(224, 224, 3),
    min_input_size=MIN_INPUT,
    stages=4,
    params=8_062_504,
    trainable_params=7_978_856,
    reference="keras.applications.DenseNet121: 8,062,504; torchvision.models.densenet121: "
              "7,978,856 trainable",
    block_dropout_rate=0.0,
    dropout_placement="optional (the paper: 0.2 without data augmentation) after every "
                      "convolution except the stem's",
    block_dropout_layers=_block_dropout_layers(CFGS["densenet121"][2]),
    head_dropout_layers=1,
    # A dense block and the transition after it; the last block and the final norm.
    stage_layers=[("conv2_", "transition1_"), ("conv3_", "transition2_"),
                  ("conv4_", "transition3_"), ("conv5_", "final_")],
    search_space=NORMALIZED_SEARCH_SPACE,
    # Hundreds of small convolutions and concatenations, each cast: slower
    # in bfloat16 on CPUs.
    cpu_mixed_bfloat16=False,
    weights=WEIGHTS,
)
def densenet121(cfg):
    """DenseNet-121 (BC, growth 32): dense blocks of 6-12-24-16 layers."""
    growth, stem_filters, depths = CFGS["densenet121"]
    return _densenet(cfg, growth, stem_filters, depths)
