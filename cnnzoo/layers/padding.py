"""Padding for a max pool: the border is `-inf`, so it never wins the max."""

import keras
from keras import ops

from cnnzoo import _validation as v


@keras.saving.register_keras_serializable(package="cnnzoo")
class MaxPoolPadding2D(keras.layers.Layer):
    """Pads the spatial axes with `-inf`, for a "valid" max pool after it.

    PyTorch's `MaxPool2d(padding=p)` pads with `-inf`: the border never wins
    a window's max. A `ZeroPadding2D` before the pool gives the same result
    only when every input is >= 0 (after a ReLU, as in ResNet's and
    DenseNet's stems); after an activation with negative outputs (tanh, ELU,
    GELU, leaky ReLU) a zero on the border would replace the window's
    negative max.

    Args:
        padding: int (the same on all four sides), a tuple of 2 ints
            (`(rows, columns)`, each on both sides), or
            `((top, bottom), (left, right))`.
        data_format: `"channels_last"` or `"channels_first"`; defaults to
            `keras.config.image_data_format()`.

    Call arguments:
        inputs: a 4D tensor.
    """

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _normalize_padding(padding)
        self.data_format = v.check_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _pad_width(self):
        spatial = [list(p) for p in self.padding]
        if self.data_format == "channels_last":
            return [[0, 0], *spatial, [0, 0]]
        return [[0, 0], [0, 0], *spatial]

    def call(self, inputs):
        return ops.pad(inputs, self._pad_width(), mode="constant",
                       constant_values=float("-inf"))

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        for axis, (before, after) in zip(axes, self.padding):
            if shape[axis] is not None:
                shape[axis] += before + after
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding,
                "data_format": self.data_format}


def _normalize_padding(padding):
    """`((top, bottom), (left, right))` of non-negative ints, or a ValueError."""
    def ints(values):
        return all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in values)

    if isinstance(padding, int) and ints([padding]):
        return ((padding, padding), (padding, padding))
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if ints(padding):
            return ((padding[0], padding[0]), (padding[1], padding[1]))
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and ints(p) for p in padding):
            return tuple(tuple(p) for p in padding)
    v.fail("Expected `padding` to be a non-negative int, a tuple of 2 of them, or "
           "((top, bottom), (left, right)).", "padding", padding)
