"""ResNet-18/34 (basic blocks) and ResNet-50/101 (bottleneck blocks, v1.5 or v1).

The bottleneck models put a stage's stride on the block's 3x3 convolution
(v1.5, torchvision's and timm's default: about 6% more FLOPs than v1, and
more accurate); `stride_in_1x1=True` puts it on the first 1x1 as the
authors' released Caffe models and keras.applications do (v1). The
parameter count is the same.

Reference:
    - [Deep Residual Learning for Image Recognition](https://arxiv.org/abs/1512.03385)
      (He et al., CVPR 2016)
"""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import (NORMALIZED_SEARCH_SPACE, min_input_size, register_model,
                                     total_stride)
from cnnzoo.weights import sets

# Architectures as data: block kind and blocks per stage (the paper's Table 1).
CFGS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
}
STAGE_FILTERS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
# Stem: 7x7/2 convolution (pad 3), 3x3/2 max pool (pad 1); then the stride-2
# first block of stages 2-4.
OPS = [(7, 2, 3), (3, 2, 1)] + [(3, s, 1) for s in STAGE_STRIDES if s > 1]
MIN_INPUT = max(min_input_size(OPS), total_stride(OPS))
PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
# torchvision's initializer: kaiming_normal_(mode="fan_out", nonlinearity="relu").
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}}


# Published weights, per model; the first set is `weights="imagenet"`.
# keras.applications' ResNets are v1 (stride on the first 1x1).
_KERAS_RESNET = {"conventions": {"stride_in_1x1": True}, "preprocessing": sets.CAFFE,
                 "license": "MIT (Kaiming He's released models, ported by keras.applications)"}
WEIGHTS = {
    "resnet18": {"tv_in1k": sets.timm_hub("resnet18", "tv_in1k", 69.758)},
    "resnet34": {"tv_in1k": sets.timm_hub("resnet34", "tv_in1k", 73.314)},
    "resnet50": {
        "tv_in1k": sets.timm_hub("resnet50", "tv_in1k", 76.130),
        "tv2_in1k": sets.timm_hub("resnet50", "tv2_in1k", 80.858, crop_pct=0.965,
                                  train_size=176),
        "keras_imagenet": sets.keras_applications(
            "resnet", "resnet50_weights_tf_dim_ordering_tf_kernels",
            "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626", 74.9,
            **_KERAS_RESNET),
    },
    "resnet101": {
        "tv_in1k": sets.timm_hub("resnet101", "tv_in1k", 77.374),
        "tv2_in1k": sets.timm_hub("resnet101", "tv2_in1k", 81.886, crop_pct=0.965,
                                  train_size=176),
        "keras_imagenet": sets.keras_applications(
            "resnet", "resnet101_weights_tf_dim_ordering_tf_kernels",
            "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21", 76.4,
            **_KERAS_RESNET),
    },
}


def stem(blocks, x):
    """7x7/2 convolution, batch norm, activation, 3x3/2 max pool (torchvision's padding).

    The pool pads with -inf, as PyTorch does. keras.applications pads with
    zeros, the same after a ReLU (all inputs are >= 0), but not after an
    activation with negative outputs.
    """
    x = blocks.conv_block(x, 64, 7, "stem", strides=2, padding=3, batch_norm=True)
    return blocks.pool(x, "stem_pool", kind="max", pool_size=3, strides=2, padding=1)


def _resnet(cfg, kind, depths):
    """The stem, four stages of residual blocks, global average pool, classifier.

    `block_dropout_rate` (one value per stage) goes after the activation of
    the block's 3x3 convolution (the one that carries a stage's stride,
    unless `stride_in_1x1`); `drop_path_rate` is the
    stochastic-depth rate of the last block, growing linearly from 0 over the
    blocks (Huang et al., 2016).
    """
    blocks = Blocks(cfg, kernel_initializer=CONV_INIT, num_residual_blocks=sum(depths))
    if kind == "basic":
        block_fn = blocks.basic_block
    else:
        stride_in_1x1 = cfg.extra["stride_in_1x1"]

        def block_fn(*args, **kwargs):
            return blocks.bottleneck_block(*args, stride_in_1x1=stride_in_1x1, **kwargs)
    inputs = blocks.inputs()
    x = stem(blocks, inputs)
    for stage, (depth, filters, stride) in enumerate(zip(depths, STAGE_FILTERS, STAGE_STRIDES)):
        for b in range(depth):
            x = block_fn(x, filters, f"conv{stage + 2}_block{b + 1}", stage,
                         strides=stride if b == 0 else 1)
    x = blocks.pooled_head(x, default_pool="avg")
    return blocks.model(inputs, x)


def _registered(params, trainable, reference, depths, bottleneck=False):
    """`register_model` with what every ResNet shares.

    Counts at 224x224x3, 1000 classes. torchvision keeps batch-norm
    statistics as buffers, so its count is the trainable count; the total
    adds them.
    """
    shared = dict(
        family="resnet", paper=PAPER, default_input_shape=(224, 224, 3),
        min_input_size=MIN_INPUT, stages=4, params=params, trainable_params=trainable,
        reference=reference,
        dropout_placement="none in the paper; optional block dropout after the 3x3 "
                          "convolution's activation, stochastic depth on each branch",
        # One block dropout inside each block; one before the classifier.
        block_dropout_layers=list(depths), head_dropout_layers=1,
        residual_blocks=sum(depths), search_space=NORMALIZED_SEARCH_SPACE,
        extra_kwargs={"stride_in_1x1": False} if bottleneck else None,
        stage_layers=[(f"conv{s + 2}_",) for s in range(4)],
    )

    def decorate(fn):  # and the published weights of the model it registers
        return register_model(weights=WEIGHTS.get(fn.__name__), **shared)(fn)

    return decorate


@_registered(11_699_112, 11_689_512, "torchvision.models.resnet18: 11,689,512 trainable",
             CFGS["resnet18"][1])
def resnet18(cfg):
    """ResNet-18 (basic blocks 2-2-2-2)."""
    return _resnet(cfg, *CFGS["resnet18"])


@_registered(21_814_696, 21_797_672, "torchvision.models.resnet34: 21,797,672 trainable",
             CFGS["resnet34"][1])
def resnet34(cfg):
    """ResNet-34 (basic blocks 3-4-6-3)."""
    return _resnet(cfg, *CFGS["resnet34"])


@_registered(25_610_152, 25_557_032, "torchvision.models.resnet50: 25,557,032 trainable",
             CFGS["resnet50"][1], bottleneck=True)
def resnet50(cfg):
    """ResNet-50 (bottleneck blocks 3-4-6-3, stride on the 3x3 (v1.5))."""
    return _resnet(cfg, *CFGS["resnet50"])


@_registered(44_654_504, 44_549_160, "torchvision.models.resnet101: 44,549,160 trainable",
             CFGS["resnet101"][1], bottleneck=True)
def resnet101(cfg):
    """ResNet-101 (bottleneck blocks 3-4-23-3, stride on the 3x3 (v1.5))."""
    return _resnet(cfg, *CFGS["resnet101"])
