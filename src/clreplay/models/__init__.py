"""Reference models: an MLP, a small CNN and the reduced ResNet-18, built by name.

Image models take raw ``uint8`` batches ``(N, C, H, W)``: their first layer,
:class:`InputNormalization`, converts and normalises on the batch's device.
"""

from clreplay.data.normalization import InputNormalization
from clreplay.models.cnn import SmallCNN, make_cnn
from clreplay.models.mlp import INITS, make_image_mlp, make_mlp
from clreplay.models.registry import (
    IMAGE_MODELS,
    feature_layer_name,
    list_models,
    make_model,
)
from clreplay.models.resnet import BasicBlock, ResNet18, make_resnet18

__all__ = [
    "BasicBlock",
    "IMAGE_MODELS",
    "INITS",
    "InputNormalization",
    "ResNet18",
    "SmallCNN",
    "feature_layer_name",
    "list_models",
    "make_cnn",
    "make_image_mlp",
    "make_mlp",
    "make_model",
    "make_resnet18",
]
