"""The zoo: importing this package registers every family."""

from cnnzoo.models import simple_cnn, vgg  # noqa: F401  (registration)
from cnnzoo.models._registry import (  # noqa: F401
    ZooConfig,
    create_model,
    list_models,
    model_info,
    register_model,
)
