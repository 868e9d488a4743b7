"""Model builders and training-step closures shared by the benchmarks.

"Plain" models are the same architectures built the way a Keras user would
without cnnzoo: `keras.applications` (with `weights=None`, so nothing is
downloaded) or a hand-written `keras.Sequential`, compiled with Keras
defaults (float32, `jit_compile="auto"`, Adam).
"""

import numpy as np

# zoo name -> the keras.applications constructor of the same architecture.
APPLICATIONS = {
    "vgg16": "VGG16",
    "resnet50": "ResNet50",
    "mobilenet_v2": "MobileNetV2",
}


def plain_simple_cnn(input_shape, num_classes):
    """`simple_cnn` written by hand as a `keras.Sequential` (421,642 parameters at 28x28x1)."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input(shape=input_shape),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ], name="plain_simple_cnn")


def plain_model(name, input_shape, num_classes):
    """The plain-Keras build of zoo model `name`."""
    import keras

    if name == "simple_cnn":
        return plain_simple_cnn(input_shape, num_classes)
    constructor = getattr(keras.applications, APPLICATIONS[name])
    return constructor(weights=None, input_shape=input_shape, classes=num_classes)


# zoo name -> the keyword arguments that make the cnnzoo build the plain
# build's architecture. keras.applications' VGG16 and MobileNetV2 have no
# dropout in their heads while the papers' (and cnnzoo's) have; its ResNet50
# is v1 (the stride on the bottleneck's first 1x1) where cnnzoo's default is
# v1.5 (on the 3x3, about 6% more FLOPs). What is left differs in cost only
# by a few elementwise passes: keras.applications' ResNet50 convolutions carry
# a bias before batch norm (26,560 parameters), and cnnzoo pads strided
# convolutions on both sides as torchvision does (an explicit ZeroPadding2D
# before MobileNetV2's stem).
SAME_ARCHITECTURE = {
    "vgg16": {"dropout_rate": 0.0},
    "mobilenet_v2": {"dropout_rate": 0.0},
    "resnet50": {"stride_in_1x1": True},
}


def zoo_model(name, input_shape, num_classes, **kwargs):
    """The cnnzoo build of the plain build's architecture (`SAME_ARCHITECTURE`)."""
    import cnnzoo

    for key, value in SAME_ARCHITECTURE.get(name, {}).items():
        kwargs.setdefault(key, value)
    return cnnzoo.create_model(name, input_shape=input_shape, num_classes=num_classes,
                               **kwargs)


def compile_default(model, jit_compile="auto"):
    """Compiles with Keras defaults (Adam, sparse cross-entropy, accuracy)."""
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile)
    return model


def batch(input_shape, num_classes, batch_size, seed=0):
    """A fixed random batch `(x, y)` as backend tensors (converted once)."""
    import keras

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch_size,) + tuple(input_shape)).astype("float32")
    y = rng.integers(0, num_classes, batch_size).astype("int32")
    return keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)


def train_steps(model, x, y, steps):
    """A closure that runs `steps` training steps on one batch."""

    def run():
        for _ in range(steps):
            logs = model.train_on_batch(x, y, return_dict=True)
        # train_on_batch returns host numbers: the steps have finished.
        return logs

    return run


def available_models(names):
    """The subset of `names` registered in the zoo."""
    import cnnzoo

    registered = set(cnnzoo.list_models())
    return [n for n in names if n in registered]


def block(x):
    """Waits until `x` is computed (JAX dispatches asynchronously)."""
    if hasattr(x, "block_until_ready"):
        x.block_until_ready()
        return x
    if hasattr(x, "numpy"):
        # TensorFlow: reading one element waits for the producer.
        x[(0,) * len(x.shape)].numpy()
        return x
    return x
