"""LeNet-5.

Reference:
    - [Gradient-Based Learning Applied to Document Recognition](
      http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf) (LeCun et al., Proc. IEEE 1998)
"""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import min_input_size, register_model

# Architectures as data: (filters, kernel, subsampling after it) of C1, C3, C5.
CONVS = [(6, 5, True), (16, 5, True), (120, 5, False)]
F6_UNITS = 84
# 5x5 'valid' convolutions and 2x2 subsampling: 32 -> 28 -> 14 -> 10 -> 5 -> 1.
OPS = [(5, 1, "valid"), (2, 2, "valid"), (5, 1, "valid"), (2, 2, "valid"), (5, 1, "valid")]


@register_model(
    family="lenet",
    paper="LeCun et al., Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998",
    default_input_shape=(32, 32, 1),
    default_num_classes=10,
    min_input_size=min_input_size(OPS),
    stages=3,
    params=61_706,
    reference="LeNet-5 of the paper with full C3 connections (the usual Keras/PyTorch "
              "re-implementation): 61,706",
    dropout_rate=0.0,
    dropout_placement="none in the paper",
    block_dropout_layers=[1] * len(CONVS),  # after C1, C3 and C5
    head_dropout_layers=1,  # after F6
)
def lenet5(cfg):
    """LeNet-5: C1-S2-C3-S4-C5 convolutions, F6 (84 units), the classifier.

    Faithful to the paper's layer sizes (6-16-120-84-10, 5x5 'valid'
    convolutions, 2x2 average-pool subsampling) with two documented
    simplifications that every modern re-implementation makes: C3 connects
    to all six S2 maps (the paper's sparse connection table gives 1,516
    weights instead of 2,416), and S2/S4 are plain average pools (the paper's
    have a trainable coefficient and bias per map). The paper's hidden
    activation is a scaled tanh, 1.7159 * tanh(2a / 3), and its output layer
    RBF units; like every zoo model the hidden activation defaults to
    `relu`; pass `activation="tanh"` for the closest named activation.

    The three stages of `block_dropout_rate` are C1, C3 and C5 (dropout after
    the activation). At inputs larger than 32x32, C5's map is larger than
    1x1 and is flattened into F6.
    """
    blocks = Blocks(cfg, kernel_initializer="glorot_uniform")
    inputs = blocks.inputs()
    x = inputs
    for stage, (filters, kernel, subsample) in enumerate(CONVS):
        x = blocks.conv_block(x, filters, kernel, f"block{stage + 1}", 1, padding="valid",
                              dropout_rate=blocks.stage_rate(stage),
                              pool="avg" if subsample else None)
    x = blocks.flatten_head(x, [F6_UNITS])
    return blocks.model(inputs, x)
