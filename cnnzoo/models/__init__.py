"""The zoo: importing this package registers every family."""

from cnnzoo.models import (  # noqa: F401  (registration)
    alexnet,
    densenet,
    lenet,
    mobilenet_v2,
    resnet,
    simple_cnn,
    vgg,
    wide_resnet,
)
from cnnzoo.models._registry import (  # noqa: F401
    ZooConfig,
    create_model,
    list_models,
    model_info,
    register_model,
)
