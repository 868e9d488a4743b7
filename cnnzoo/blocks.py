"""The block builder every zoo model is made of.

`conv -> [batch norm] -> activation -> [dropout] -> [pool]` and its residual
variants. Every hidden activation and every dropout of every model comes from
`Blocks.act` and `Blocks.drop`, which read the model's `ZooConfig`; a model
file says only what is particular to its architecture.

Layer names follow one scheme: `{prefix}_conv{i}`, `{prefix}_bn{i}`,
`{prefix}_act{i}`, `{prefix}_drop{i}`, `{prefix}_pool`.
"""

from cnnzoo._lazy import keras
from cnnzoo.layers import factory

# Every zoo model uses torchvision's batch-norm settings: epsilon 1e-5 and
# momentum 0.1 in PyTorch's convention (= 0.9 in Keras's). Keras's defaults
# differ (1e-3, 0.99), and so do keras.applications' (ResNet and DenseNet:
# 1.001e-5, 0.99; MobileNetV2, as the paper's TensorFlow code: 1e-3, 0.999).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


class _TunableRate(float):
    """A rate from the config of a `tunable_dropout` model: it gets a variable layer."""


class Blocks:
    """Builds blocks for one model from its validated `ZooConfig`.

    Args:
        cfg: the model's `cnnzoo.models.ZooConfig`.
        kernel_initializer: the paper's convolution initializer.
        num_residual_blocks: how many residual blocks the model has, so that
            stochastic depth can grow linearly from 0 to `drop_path_rate`.
    """

    def __init__(self, cfg, kernel_initializer="glorot_uniform", num_residual_blocks=0):
        self.cfg = cfg
        self.kernel_initializer = kernel_initializer
        self.num_residual_blocks = num_residual_blocks
        self._residual_index = 0

    # -- the two knobs ----------------------------------------------------

    def act(self, x, name, activation=None):
        """The hidden activation (the config's, unless overridden)."""
        layer = factory.make_activation(
            self.cfg.activation if activation is None else activation,
            implementation=self.cfg.implementation,
            name=name,
        )
        return layer(x)

    def drop(self, x, rate, name, dropout_type=None):
        """Dropout at `rate` (no layer when the rate is 0).

        A rate that comes from the config (`stage_rate`, `head_rate`) of a
        `tunable_dropout` model always gets a `VariableDropout` layer.
        """
        if dropout_type is None:
            dropout_type = self.cfg.dropout_type if len(x.shape) == 4 else "standard"
        layer = factory.make_dropout(rate, dropout_type=dropout_type,
                                     implementation=self.cfg.implementation, name=name,
                                     variable=isinstance(rate, _TunableRate))
        return x if layer is None else layer(x)

    def _rate(self, rate):
        return _TunableRate(rate) if self.cfg.tunable_dropout else rate

    def stage_rate(self, stage):
        """The block dropout rate of stage `stage` (0-based)."""
        return self._rate(self.cfg.block_dropout_rate[stage])

    def head_rate(self):
        """The head dropout rate."""
        return self._rate(self.cfg.dropout_rate)

    # -- plain blocks -------------------------------------------------------

    def conv(self, x, filters, kernel_size, name, strides=1, padding="same", use_bias=True,
             groups=1):
        """A named `Conv2D`; an int `padding` zero-pads both sides first (PyTorch style)."""
        if isinstance(padding, int) and not isinstance(padding, bool):
            if padding:
                x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
            padding = "valid"
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
            groups=groups, kernel_initializer=self.kernel_initializer, name=name,
        )(x)

    def bn(self, x, name):
        return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                               name=name)(x)

    def pool(self, x, name, kind="max", pool_size=2, strides=None, padding="valid"):
        """A named pooling layer; an int `padding` pads both sides first (PyTorch style).

        PyTorch pads a max pool with `-inf` (`MaxPoolPadding2D`; zeros would
        win the max after an activation with negative outputs) and an
        average pool with zeros (counted in the mean).
        """
        if isinstance(padding, int) and not isinstance(padding, bool):
            if padding and kind == "max":
                from cnnzoo.layers.padding import MaxPoolPadding2D

                x = MaxPoolPadding2D(padding, name=f"{name}_pad")(x)
            elif padding:
                x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
            padding = "valid"
        cls = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
        return cls(pool_size, strides=strides, padding=padding, name=name)(x)

    def conv_block(self, x, filters, kernel_size, prefix, i="", *, strides=1, padding="same",
                   batch_norm=False, activation=True, dropout_rate=0.0, pool=None,
                   pool_size=2, pool_strides=None, pool_padding="valid", use_bias=None):
        """`conv -> [batch norm] -> activation -> [dropout] -> [pool]`.

        Args:
            x: the input tensor.
            filters, kernel_size, strides, padding: of the convolution.
            prefix: the block's name, e.g. `"block2"`.
            i: the convolution's index inside the block (`""` for one).
            batch_norm: add batch normalization after the convolution (the
                convolution then has no bias unless `use_bias=True`).
            activation: apply the hidden activation.
            dropout_rate: dropout after the activation (the model passes
                `self.stage_rate(stage)` where the paper or user wants it).
            pool: `None`, `"max"` or `"avg"`.
        """
        if use_bias is None:
            use_bias = not batch_norm
        if isinstance(padding, int) and not isinstance(padding, bool):
            if padding:
                x = keras.layers.ZeroPadding2D(padding, name=f"{prefix}_pad{i}")(x)
            padding = "valid"
        x = self.conv(x, filters, kernel_size, f"{prefix}_conv{i}", strides=strides,
                      padding=padding, use_bias=use_bias)
        if batch_norm:
            x = self.bn(x, f"{prefix}_bn{i}")
        if activation:
            x = self.act(x, f"{prefix}_act{i}")
        x = self.drop(x, dropout_rate, f"{prefix}_drop{i}")
        if pool:
            x = self.pool(x, f"{prefix}_pool", kind=pool, pool_size=pool_size,
                          strides=pool_strides, padding=pool_padding)
        return x

    def dense_block(self, x, units, prefix, dropout_rate=0.0, dropout_first=False):
        """`dense -> activation -> [dropout]` (or dropout first, AlexNet-style)."""
        if dropout_first:
            x = self.drop(x, dropout_rate, f"{prefix}_drop")
        x = keras.layers.Dense(units, name=f"{prefix}_dense")(x)
        x = self.act(x, f"{prefix}_act")
        if not dropout_first:
            x = self.drop(x, dropout_rate, f"{prefix}_drop")
        return x

    # -- residual variants ----------------------------------------------------

    def _drop_path(self, x, name):
        """Stochastic depth on a residual branch, its rate growing linearly."""
        rate = 0.0
        if self.num_residual_blocks > 1:
            rate = self.cfg.drop_path_rate * self._residual_index / (self.num_residual_blocks - 1)
        elif self.num_residual_blocks == 1:
            rate = self.cfg.drop_path_rate
        self._residual_index += 1
        if rate == 0.0:
            return x
        from cnnzoo.layers.drop_path import DropPath

        return DropPath(rate, name=name)(x)

    @staticmethod
    def strided_padding(kernel_size, strides):
        """`"same"`, or PyTorch's symmetric `(k - 1) // 2` padding for a strided conv.

        Keras's `"same"` pads a strided convolution on the bottom and right
        only; the reference implementations (torchvision, the Wide ResNet
        authors' code) pad both sides. The output size is the same.
        """
        return "same" if strides == 1 else (kernel_size - 1) // 2

    def padding_for(self, kernel_size, strides):
        """The padding of a convolution in this model: PyTorch's, or TensorFlow's where asked.

        `strided_padding` by default. A model built for weights trained with
        TensorFlow's `"same"` (keras.applications' MobileNetV2: bottom and
        right only at even sizes; `ZooConfig.extra["padding"] ==
        "tensorflow"`) gets `"same"` for its strided convolutions too: the
        output size is the same, the pixels each output sees are not.
        """
        if self.cfg.extra.get("padding") == "tensorflow":
            return "same"
        return self.strided_padding(kernel_size, strides)

    def residual_add(self, shortcut, branch, prefix, activation=True):
        """`shortcut + drop_path(branch)`, then the activation."""
        branch = self._drop_path(branch, f"{prefix}_droppath")
        x = keras.layers.Add(name=f"{prefix}_add")([shortcut, branch])
        if activation:
            x = self.act(x, f"{prefix}_out")
        return x

    def basic_block(self, x, filters, prefix, stage, strides=1):
        """ResNet basic block (two 3x3 convolutions), dropout between them."""
        shortcut = x
        if strides != 1 or x.shape[-1] != filters:
            shortcut = self.conv(x, filters, 1, f"{prefix}_0_conv", strides=strides,
                                 use_bias=False)
            shortcut = self.bn(shortcut, f"{prefix}_0_bn")
        y = self.conv_block(x, filters, 3, prefix, 1, strides=strides,
                            padding=self.padding_for(3, strides), batch_norm=True,
                            dropout_rate=self.stage_rate(stage))
        y = self.conv_block(y, filters, 3, prefix, 2, batch_norm=True, activation=False)
        return self.residual_add(shortcut, y, prefix)

    def bottleneck_block(self, x, filters, prefix, stage, strides=1, expansion=4,
                         stride_in_1x1=False):
        """ResNet bottleneck (1x1, 3x3, 1x1).

        The stride is on the 3x3 convolution (v1.5, torchvision's), or on the
        first 1x1 with `stride_in_1x1=True` (v1: the paper's released
        models and keras.applications).
        """
        out = filters * expansion
        shortcut = x
        if strides != 1 or x.shape[-1] != out:
            shortcut = self.conv(x, out, 1, f"{prefix}_0_conv", strides=strides, use_bias=False)
            shortcut = self.bn(shortcut, f"{prefix}_0_bn")
        stride_1x1, stride_3x3 = (strides, 1) if stride_in_1x1 else (1, strides)
        y = self.conv_block(x, filters, 1, prefix, 1, strides=stride_1x1, batch_norm=True)
        y = self.conv_block(y, filters, 3, prefix, 2, strides=stride_3x3,
                            padding=self.padding_for(3, stride_3x3), batch_norm=True,
                            dropout_rate=self.stage_rate(stage))
        y = self.conv_block(y, out, 1, prefix, 3, batch_norm=True, activation=False)
        return self.residual_add(shortcut, y, prefix)

    def preact_wide_block(self, x, filters, prefix, stage, strides=1):
        """Wide ResNet block: BN-act-conv, dropout, BN-act-conv (pre-activation).

        The shortcut is a 1x1 convolution of the pre-activated input where
        the shape changes, as in the authors' code.
        """
        pre = self.bn(x, f"{prefix}_bn1")
        pre = self.act(pre, f"{prefix}_act1")
        if strides != 1 or x.shape[-1] != filters:
            shortcut = self.conv(pre, filters, 1, f"{prefix}_0_conv", strides=strides,
                                 use_bias=False)
        else:
            shortcut = x
        y = self.conv(pre, filters, 3, f"{prefix}_conv1", strides=strides,
                      padding=self.padding_for(3, strides), use_bias=False)
        y = self.bn(y, f"{prefix}_bn2")
        y = self.act(y, f"{prefix}_act2")
        y = self.drop(y, self.stage_rate(stage), f"{prefix}_drop")
        y = self.conv(y, filters, 3, f"{prefix}_conv2", use_bias=False)
        return self.residual_add(shortcut, y, prefix, activation=False)

    def inverted_residual(self, x, filters, prefix, stage, strides=1, expansion=6):
        """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""
        in_channels = x.shape[-1]
        y = x
        if expansion != 1:
            y = self.conv_block(y, in_channels * expansion, 1, prefix, "_expand",
                                batch_norm=True)
        padding = self.padding_for(3, strides)
        if padding != "same":
            y = keras.layers.ZeroPadding2D(padding, name=f"{prefix}_dwpad")(y)
            padding = "valid"
        y = keras.layers.DepthwiseConv2D(3, strides=strides, padding=padding, use_bias=False,
                                         depthwise_initializer=self.kernel_initializer,
                                         name=f"{prefix}_dwconv")(y)
        y = self.bn(y, f"{prefix}_dwbn")
        y = self.act(y, f"{prefix}_dwact")
        y = self.drop(y, self.stage_rate(stage), f"{prefix}_drop")
        y = self.conv_block(y, filters, 1, prefix, "_project", batch_norm=True,
                            activation=False)
        if strides == 1 and in_channels == filters:
            return self.residual_add(x, y, prefix, activation=False)
        return y

    def dense_layer(self, x, growth_rate, prefix, stage, bn_size=4):
        """DenseNet-BC layer: BN-act-conv1x1-[drop]-BN-act-conv3x3-[drop], concatenated."""
        rate = self.stage_rate(stage)
        y = self.bn(x, f"{prefix}_bn1")
        y = self.act(y, f"{prefix}_act1")
        y = self.conv(y, bn_size * growth_rate, 1, f"{prefix}_conv1", use_bias=False)
        y = self.drop(y, rate, f"{prefix}_drop1")
        y = self.bn(y, f"{prefix}_bn2")
        y = self.act(y, f"{prefix}_act2")
        y = self.conv(y, growth_rate, 3, f"{prefix}_conv2", use_bias=False)
        y = self.drop(y, rate, f"{prefix}_drop2")
        return keras.layers.Concatenate(name=f"{prefix}_concat")([x, y])

    # -- head ---------------------------------------------------------------

    def global_pool(self, x, kind="avg", name="avg_pool"):
        cls = (keras.layers.GlobalMaxPooling2D if kind == "max"
               else keras.layers.GlobalAveragePooling2D)
        return cls(name=name)(x)

    def classifier(self, x, name="predictions"):
        """The last layer: dropout at the head rate, dense, the classifier activation.

        Kept in float32 under mixed precision so that the softmax is exact.
        """
        cfg = self.cfg
        act = cfg.classifier_activation
        layer_class = act if isinstance(act, type) else None
        x = keras.layers.Dense(cfg.num_classes, activation=None if layer_class else act,
                               dtype="float32", name=name)(x)
        if layer_class is not None:
            x = layer_class(name=f"{name}_act", dtype="float32")(x)
        return x

    def pooled_head(self, x, default_pool="avg"):
        """The head of models that pool globally before the classifier.

        With `include_top`: global pooling (the config's kind, else
        `default_pool`), head dropout, classifier. Without: the config's
        `pooling`, or the feature map.
        """
        cfg = self.cfg
        if cfg.include_top:
            x = self.global_pool(x, cfg.pooling or default_pool)
            x = self.drop(x, self.head_rate(), "head_drop", dropout_type="standard")
            return self.classifier(x)
        if cfg.pooling:
            return self.global_pool(x, cfg.pooling)
        return x

    def flatten_head(self, x, units, dropout_first=False):
        """The head of models that flatten into dense layers (VGG, AlexNet, LeNet-5, simple_cnn).

        With `include_top`: flatten, one `dense_block` per entry of `units`
        (`fc1`, `fc2`, ...) with the head dropout, the classifier. Without:
        the config's `pooling`, or the feature map.
        """
        cfg = self.cfg
        if cfg.include_top:
            x = keras.layers.Flatten(name="flatten")(x)
            for i, n in enumerate(units):
                x = self.dense_block(x, n, f"fc{i + 1}", dropout_rate=self.head_rate(),
                                     dropout_first=dropout_first)
            return self.classifier(x)
        if cfg.pooling:
            return self.global_pool(x, cfg.pooling)
        return x

    def model(self, inputs, outputs):
        """The Keras model from the `inputs()` tensor to `outputs`.

        Where `inputs()` added a preprocessing layer, the model's input is the
        raw `images` input before it.
        """
        return keras.Model(getattr(self, "_images", inputs), outputs, name=self.cfg.name)

    def inputs(self):
        """The `images` input; preprocessed for the weights where they need it.

        `ZooConfig.extra["preprocessing"]` (set by `create_model` for
        pretrained weights: keras.applications' `caffe`/`tf`/`torch` modes or
        a mean and std) adds a `cnnzoo.weights.Preprocessing` layer, so that
        the model takes raw 0-255 pixels.
        """
        images = keras.Input(shape=self.cfg.input_shape, name="images")
        preprocessing = self.cfg.extra.get("preprocessing")
        if not preprocessing:
            return images
        from cnnzoo.weights.preprocessing import Preprocessing

        self._images = images
        return Preprocessing(**preprocessing, name="preprocessing")(images)
