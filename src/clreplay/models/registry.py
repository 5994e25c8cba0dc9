"""Models looked up by name (what ``clreplay run --model`` uses), and their embedding layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from torch import nn

from clreplay._validation import check_choice, check_positive_int
from clreplay.components import Registry
from clreplay.models.cnn import make_cnn
from clreplay.models.mlp import INITS, make_image_mlp, make_mlp
from clreplay.models.resnet import make_resnet18
from clreplay.options import Option

HIDDEN = Option("hidden", [256], "hidden layer sizes of the MLP", kind=int, minimum=1, maximum=65536,
                many=True, maximum_items=64)
INIT = Option("init", "default", "the MLP's initialisation: default (torch's) or xavier "
              "(Glorot-uniform weights, zero biases: mammoth's MLP)", choices=tuple(INITS))
WIDTH = Option("width", None, "resnet18 base filters (default 20; 64: full width) or cnn channels "
               "(default 32)", kind=int, minimum=1, maximum=1024)


@dataclass(frozen=True)
class ModelSpec:
    """A model as the registry sees it: its ``options`` and whether it needs image inputs."""

    name: str
    summary: str
    options: Tuple[Option, ...] = ()
    image: bool = False
    default_width: Optional[int] = None


MODELS = Registry("model", [
    ModelSpec("cnn", "small CNN: two conv/ReLU/max-pool blocks, a hidden layer of 256, a classifier",
              (WIDTH,), image=True, default_width=32),
    ModelSpec("mlp", "ReLU MLP (hidden layer sizes from hidden=); flattens image inputs", (HIDDEN, INIT)),
    ModelSpec("resnet18", "ResNet-18 for 32x32 images, width= base filters (20: the reduced ResNet-18 of "
              "GEM and DER)", (WIDTH,), image=True, default_width=20),
])
#: Models that need image inputs (C, H, W).
IMAGE_MODELS = tuple(name for name, spec in MODELS.items() if spec.image)
#: Default width= of each model that takes one.
DEFAULT_WIDTH = {name: spec.default_width for name, spec in MODELS.items() if spec.default_width}


def list_models(pattern: str = "*") -> List[str]:
    """Registered model names matching a glob ``pattern``.

    >>> list_models()
    ['cnn', 'mlp', 'resnet18']
    """
    return sorted(MODELS.names(pattern))


def make_model(
    name: str,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    seed: int = 0,
    hidden: Sequence[int] = (256,),
    width: Optional[int] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    init: str = "default",
) -> nn.Module:
    """The model ``name`` for inputs of ``input_shape`` (``(D,)`` vectors or ``(C, H, W)``
    images), initialised from ``seed``.

    Image models start with :class:`~clreplay.models.InputNormalization` (``mean``,
    ``std`` per channel, in [0, 1] units), so they take raw ``uint8`` batches. ``hidden``
    sets the MLP's layers and ``init`` its initialisation (:data:`~clreplay.models.mlp.INITS`);
    ``width`` the ResNet-18's base filters (default 20) or the CNN's first convolution's
    channels (default 32; the second has twice as many).

    >>> make_model("resnet18", (3, 32, 32), 10).classifier
    Linear(in_features=160, out_features=10, bias=True)
    >>> make_model("cnn", (64,), 10)
    Traceback (most recent call last):
    ...
    ValueError: model 'cnn' needs image inputs (channels, height, width), got input_shape (64,)
    """
    check_choice("model", name, list_models())
    shape = tuple(input_shape)
    if width is not None:
        width = check_positive_int("width", width)
    check_choice("init", init, list(INITS))
    if name == "mlp":
        if width is not None:
            raise ValueError(f"width applies to models {list(DEFAULT_WIDTH)}, got width={width} "
                             "with model 'mlp' (its layers are set by hidden)")
        if len(shape) == 1:
            return make_mlp(shape[0], n_classes, hidden, seed=seed, init=init)
        return make_image_mlp(shape, n_classes, hidden, seed=seed, mean=mean, std=std, init=init)
    if init != "default":
        raise ValueError(f"init applies to model 'mlp', got init={init!r} with model {name!r}")
    if len(shape) != 3:
        raise ValueError(
            f"model {name!r} needs image inputs (channels, height, width), got input_shape {shape}"
        )
    width = DEFAULT_WIDTH[name] if width is None else width
    if name == "cnn":
        return make_cnn(shape, n_classes, seed=seed, channels=(width, 2 * width), mean=mean, std=std)
    return make_resnet18(shape, n_classes, seed=seed, nf=width, mean=mean, std=std)


def feature_layer_name(model: nn.Module) -> str:
    """Name of the submodule whose output is the model's embedding (the penultimate
    representation that herding and closest-to-centre selection read).

    A model names it in a ``feature_layer`` attribute (the CNN and the ResNet do); for
    an ``nn.Sequential`` MLP it is its last hidden activation.

    >>> feature_layer_name(make_mlp(8, 3, [4, 4])), feature_layer_name(make_model("resnet18", (3, 8, 8), 2))
    ('3', 'pool')
    """
    name = getattr(model, "feature_layer", None)
    if isinstance(name, str):
        return name
    if isinstance(model, nn.Sequential) and len(model) >= 2:
        return str(len(model) - 2)
    raise TypeError(
        "model must name its embedding layer in a feature_layer attribute or be an "
        f"nn.Sequential MLP, got {type(model).__name__}"
    )
