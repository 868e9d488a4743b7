"""The preprocessing that travels with pretrained weights, as a layer inside the model."""

import numpy as np

import keras
from keras import ops

from cnnzoo import _validation as v

MODES = ("caffe", "tf", "torch")
# keras.applications.imagenet_utils.preprocess_input's statistics.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def channel_stats(stats, channels):
    """Per-channel statistics of RGB for `channels` input channels.

    3 channels: as given. 1: their mean (a grey image). n: RGB repeated
    (channel i gets RGB channel i % 3), the rule `adapt_first_kernel` uses
    for the first convolution.
    """
    stats = [float(s) for s in stats]
    if channels == 3:
        return stats
    if channels == 1:
        return [sum(stats) / 3.0]
    return [stats[i % 3] for i in range(channels)]


@keras.saving.register_keras_serializable(package="cnnzoo")
class Preprocessing(keras.layers.Layer):
    """Maps raw 0-255 pixels to what pretrained weights were trained on.

    The modes of `keras.applications.imagenet_utils.preprocess_input`:

    - `"caffe"`: RGB to BGR, minus the ImageNet mean in BGR
      `[103.939, 116.779, 123.68]` (VGG and ResNet from keras.applications).
    - `"tf"`: `x / 127.5 - 1` (MobileNetV2 from keras.applications).
    - `"torch"`: `(x / 255 - mean) / std` with ImageNet's mean and std
      (torchvision's and timm's weights, DenseNet from keras.applications),
      or the `mean` and `std` given.

    With a channel count other than 3 there is no BGR flip, and the
    statistics follow `channel_stats` (a grey image gets their mean).

    Args:
        mode: `"caffe"`, `"tf"` or `"torch"`.
        mean: for `"torch"`, the per-channel mean of the 0-1 pixels.
            Defaults to ImageNet's.
        std: for `"torch"`, the per-channel std. Defaults to ImageNet's.
        **kwargs: other `keras.layers.Layer` arguments (`name`, ...). Other
            keys of a weights set's preprocessing (`note`, `crop_pct`)
            describe it and are ignored.

    Input shape:
        `(batch, height, width, channels)`, raw pixels in [0, 255].
    """

    def __init__(self, mode="torch", mean=None, std=None, **kwargs):
        kwargs.pop("note", None)
        kwargs.pop("crop_pct", None)
        super().__init__(**kwargs)
        self.mode = v.check_choice("mode", mode, MODES)
        if mode != "torch" and (mean is not None or std is not None):
            v.fail("Expected `mean` and `std` only with mode='torch'.", "mode", mode)
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]
        if self.std is not None and min(self.std) <= 0:
            v.fail("Expected a positive `std`.", "std", self.std)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.mode == "caffe":
            # x[..., ::-1] - mean_bgr: the flip only for 3 channels.
            self._flip = channels == 3
            mean = _CAFFE_MEAN_BGR if self._flip else _CAFFE_MEAN_BGR[::-1]
            self._offset = np.array(channel_stats(mean, channels), "float32")
        elif self.mode == "torch":
            mean = channel_stats(self.mean or _TORCH_MEAN, channels)
            std = channel_stats(self.std or _TORCH_STD, channels)
            self._mean = np.array(mean, "float32")
            self._std = np.array(std, "float32")

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            if self._flip:
                x = ops.flip(x, axis=-1)
            return x - ops.cast(self._offset, x.dtype)
        # As keras.applications: x / 255, then minus the mean, over the std.
        x = x / 255.0
        return (x - ops.cast(self._mean, x.dtype)) / ops.cast(self._std, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "mean": self.mean, "std": self.std}
