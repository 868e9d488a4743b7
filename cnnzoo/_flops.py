"""FLOPs of a Keras model, counted analytically from its layer shapes.

The count is the same on every backend (no profiler):

- `Conv2D`: `2 * H_out * W_out * k_h * k_w * C_in / groups * C_out` per
  image; `DepthwiseConv2D`: `2 * H_out * W_out * k_h * k_w * C_in * mult`;
  `Dense`: `2 * units_in * units_out` per row. Bias, activation, pooling and
  normalization FLOPs are left out (they are memory-bound and small).
- A training step is 3x the forward FLOPs (forward, gradient with respect to
  the weights, gradient with respect to the input), minus the input
  gradient of the first weight layer, which nothing needs.

Used by the FLOP/s benchmark (`cnnzoo.bench.flops`) and by the search's
`threads="auto"` (`cnnzoo.runtime.count_step_flops`).
"""


def weight_layers(model):
    """The model's layers in call order, nested models flattened."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from weight_layers(layer)
        else:
            yield layer


def forward_flops(model):
    """Forward FLOPs per example, and those of the first weight layer.

    Returns:
        `(total, first)`: FLOPs of Conv2D, DepthwiseConv2D and Dense layers
        per example, and the FLOPs of the first of them (whose input
        gradient a training step does not compute).
    """
    import keras

    total, first = 0, None
    for layer in weight_layers(model):
        flops = 0
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            flops = 2 * h * w * kh * kw * c_out
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            _, h, w, c_out = layer.output.shape
            flops = 2 * h * w * kh * kw * (c_in // layer.groups) * c_out
        elif isinstance(layer, keras.layers.Dense):
            rows = 1
            for d in layer.input.shape[1:-1]:
                rows *= d
            flops = 2 * rows * layer.input.shape[-1] * layer.units
        if flops:
            total += flops
            if first is None:
                first = flops
    return total, first or 0


def training_flops(model):
    """FLOPs of one training step per example (see the module docstring)."""
    total, first = forward_flops(model)
    return 3 * total - first
