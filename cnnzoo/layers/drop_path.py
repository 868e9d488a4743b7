"""Stochastic depth: drops a whole residual branch per sample."""

import keras

from cnnzoo import _validation as v
from cnnzoo.layers.dropout import dropout


@keras.saving.register_keras_serializable(package="cnnzoo")
class DropPath(keras.layers.Layer):
    """Drops the residual branch of whole samples (stochastic depth).

    In training, each sample's branch output is kept with probability
    `1 - rate` and scaled by `1 / (1 - rate)`; at inference the input passes
    through untouched. Built on `cnnzoo.layers.dropout.dropout` (uniform
    noise, a comparison and `where`), so it runs on every backend.

    Args:
        rate: float in [0, 1), the probability of dropping a sample's branch.
        seed: optional int seed.

    Call arguments:
        inputs: a tensor of any rank; the first axis is the batch.
        training: whether to drop. Defaults to `False`.

    Reference:
        - [Huang et al., 2016](https://arxiv.org/abs/1603.09382)
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = v.check_rate("rate", rate)
        self.seed = v.check_int("seed", seed, allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if len(inputs.shape) < 1:
            v.fail("Expected a batch (its first axis the samples) for DropPath.",
                   "inputs.shape", tuple(inputs.shape))
        if not training or self.rate == 0.0:
            return inputs
        # Inverted dropout with one mask value per sample: a dropped branch
        # is 0 even where it holds inf or NaN (a multiply by 0 would be NaN).
        noise_shape = (None,) + (1,) * (len(inputs.shape) - 1)
        return dropout(inputs, self.rate, noise_shape=noise_shape, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
