"""The classic ReLU/Dropout CNN for small images.

conv -> ReLU -> pool, twice, then dense -> ReLU -> dropout -> softmax: the
typical architecture with ReLU and Dropout layers that the tutorial behind
this project draws.
"""

from cnnzoo.blocks import Blocks
from cnnzoo.models._registry import min_input_size, register_model

FILTERS = (32, 64)
DENSE_UNITS = 128


@register_model(
    family="simple_cnn",
    paper="The classic ReLU/Dropout CNN (the tutorial's conv-ReLU-pool / dense-ReLU-dropout design)",
    default_input_shape=(28, 28, 1),
    default_num_classes=10,
    # 3x3 'same' convolutions keep the size; two 2x2 pools.
    min_input_size=min_input_size([(2, 2, "valid")] * 2),
    stages=2,
    params=421_642,
    reference="a hand-written keras.Sequential of the same layers: 421,642",
    dropout_rate=0.5,
    dropout_placement="0.5 after the hidden dense layer's ReLU",
    block_dropout_layers=[1] * len(FILTERS),
    head_dropout_layers=1,
)
def simple_cnn(cfg):
    """Two conv-ReLU-pool stages and a dense-ReLU-dropout head; for 8x8 to 64x64 inputs (4x4 at least)."""
    blocks = Blocks(cfg, kernel_initializer="he_uniform")
    inputs = blocks.inputs()
    x = inputs
    for stage, filters in enumerate(FILTERS):
        x = blocks.conv_block(x, filters, 3, f"block{stage + 1}",
                              dropout_rate=blocks.stage_rate(stage), pool="max")
    x = blocks.flatten_head(x, [DENSE_UNITS])
    return blocks.model(inputs, x)
