"""Marking a layer without weights built when it is made, as Keras's own do."""

import keras


def build_at_init(layer):
    """Marks `layer` built now, unless its class (a user's subclass) has a `build` of its own.

    Keras's weightless layers (`keras.layers.ReLU`, `Dropout`) are built in
    `__init__` only while `build` is the base layer's: a subclass that
    creates a weight in its own `build` gets that `build` called on its first
    input, as for any Keras layer.
    """
    if type(layer).build is keras.layers.Layer.build:
        layer.built = True
