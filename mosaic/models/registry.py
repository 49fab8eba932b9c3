"""Classifiers by name: ``get_classifier("wrn40_2", spec)``."""
from __future__ import annotations

from typing import Callable

from mosaic.models.base import Classifier
from mosaic.models.cnn import cnn, cnn_half
from mosaic.models.lenet import lenet5, lenet5_half
from mosaic.models.resnet import resnet18, resnet34
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
