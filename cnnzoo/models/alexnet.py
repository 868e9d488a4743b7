"""AlexNet, torchvision's single-tower variant.

Reference:
    - [ImageNet Classification with Deep Convolutional Neural Networks](
      https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks)
      (Krizhevsky et al., NeurIPS 2012)
    - [One weird trick for parallelizing convolutional neural networks](
      https://arxiv.org/abs/1404.5997) (Krizhevsky, 2014): the single-tower
      model. Its widths are 64-192-384-384-256; torchvision's (and these),
      64-192-384-256-256, are those of Krizhevsky's cuda-convnet2
      single-GPU configuration.
"""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import min_input_size, register_model

# Architectures as data: (filters, kernel, stride, padding, 3x3/2 max pool after it).
CONVS = [
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
]
FC_UNITS = 4096


def _ops(convs):
    """The spatial op chain, for `min_input_size`."""
    ops = []
    for _, kernel, stride, pad, pool in convs:
        ops.append((kernel, stride, pad))
        if pool:
            ops.append((3, 2, "valid"))
    return ops


OPS = _ops(CONVS)


@register_model(
    family="alexnet",
    paper="Krizhevsky et al., ImageNet Classification with Deep Convolutional Neural "
          "Networks, NeurIPS 2012",
    default_input_shape=(224, 224, 3),
    min_input_size=min_input_size(OPS),
    stages=len(CONVS),
    params=61_100_840,
    reference="torchvision.models.alexnet: 61,100,840",
    dropout_rate=0.5,
    dropout_placement="0.5 before fc6 and before fc7 (torchvision's order)",
    block_dropout_layers=[1] * len(CONVS),
    head_dropout_layers=2,
)
def alexnet(cfg):
    """AlexNet: five convolutions, three max pools, fc6 and fc7 (4096) with dropout 0.5.

    torchvision's single-tower widths (64-192-384-256-256) without local
    response normalization, and its dropout placement: before fc6 and
    before fc7. torchvision ends the features with an adaptive average pool
    to 6x6, which is the identity at 224x224; here the final map is
    flattened as is, so at other input sizes fc6 grows or shrinks with the
    map (as Keras's VGG does) instead of averaging pixels together. The five
    stages of `block_dropout_rate` are the five convolutions.
    """
    blocks = Blocks(cfg, kernel_initializer="he_uniform")
    inputs = blocks.inputs()
    x = inputs
    for stage, (filters, kernel, stride, pad, pool) in enumerate(CONVS):
        x = blocks.conv_block(x, filters, kernel, f"block{stage + 1}", 1, strides=stride,
                              padding=pad, dropout_rate=blocks.stage_rate(stage),
                              pool="max" if pool else None, pool_size=3, pool_strides=2)
    x = blocks.flatten_head(x, [FC_UNITS, FC_UNITS], dropout_first=True)
    return blocks.model(inputs, x)
