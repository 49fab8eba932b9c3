"""Networks by name: ``get_classifier("wrn40_2", spec)``, ``get_segmenter("segnet_small", spec)``, and
``get_model(name, spec)``, which builds either and checks that it fits the spec's task."""
from __future__ import annotations

from typing import Callable

from mosaic.models.base import Classifier
from mosaic.models.cnn import cnn, cnn_half
from mosaic.models.lenet import lenet5, lenet5_half
from mosaic.models.resnet import resnet18, resnet34
from mosaic.models.segmenter import SEGMENTER_FACTORIES, Segmenter
from mosaic.models.vgg import vgg11_bn
from mosaic.models.wrn import wrn16_1, wrn16_2, wrn40_1, wrn40_2
from mosaic.spec import ImageSpec

_FACTORIES: dict[str, Callable[[ImageSpec], Classifier]] = {
    f.__name__: f
    for f in (lenet5, lenet5_half, cnn, cnn_half, resnet18, resnet34,
              wrn16_1, wrn16_2, wrn40_1, wrn40_2, vgg11_bn)
}
CLASSIFIERS: tuple[str, ...] = tuple(_FACTORIES)


def get_classifier(name: str, spec: ImageSpec) -> Classifier:
    """Build the classifier ``name`` for images of ``spec`` with ``spec.num_classes`` outputs."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown classifier {name!r}; valid names: {', '.join(CLASSIFIERS)}")
    return _FACTORIES[name](spec)


SEGMENTERS: tuple[str, ...] = tuple(SEGMENTER_FACTORIES)
MODELS: tuple[str, ...] = CLASSIFIERS + SEGMENTERS


def get_segmenter(name: str, spec: ImageSpec) -> Segmenter:
    """Build the segmenter ``name`` for images of ``spec``: logits (B, spec.num_classes, H, W)."""
    if name not in SEGMENTER_FACTORIES:
        raise ValueError(f"unknown segmenter {name!r}; valid names: {', '.join(SEGMENTERS)}")
    return SEGMENTER_FACTORIES[name](spec)


def check_model(name: str, spec: ImageSpec, what: str = "model") -> None:
    """Refuse, without building anything, a ``name`` that is no model or a model of the other task than
    ``spec.task`` (``what`` names the role in the message: "teacher", "student", ...)."""
    if name not in MODELS:
        raise ValueError(f"unknown {what} {name!r}; valid names: {', '.join(MODELS)}")
    dense = spec.task == "segmentation"
    if dense != (name in SEGMENTERS):
        kind, names = ("segmenters", SEGMENTERS) if dense else ("classifiers", CLASSIFIERS)
        raise ValueError(f"{what} {name!r} is a {'classifier' if dense else 'segmenter'} but the data ({spec}) is a "
                         f"{spec.task} task; use one of the {kind}: {', '.join(names)}")


def get_model(name: str, spec: ImageSpec) -> Classifier | Segmenter:
    """The classifier or segmenter ``name`` for ``spec``, refused when it does not fit ``spec.task``."""
    check_model(name, spec)
    return get_segmenter(name, spec) if spec.task == "segmentation" else get_classifier(name, spec)
