"""Networks of the MosaicKD game: classifiers and segmenters (teacher, student), generator, discriminators.

Every network takes images float in [0, 1] of shape (B, C, S, S) as described by an ImageSpec;
classifiers normalise their input themselves. This package imports only torch and mosaic.spec.
"""
from mosaic.models.base import Classifier, count_parameters, describe
from mosaic.models.cnn import cnn, cnn_half
from mosaic.models.discriminator import (
    DISCRIMINATORS,
    FullImageDiscriminator,
    PatchDiscriminator,
    get_discriminator,
    reachable_patch_sizes,
    receptive_field,
)
from mosaic.models.generator import Generator
from mosaic.models.lenet import lenet5, lenet5_half
from mosaic.models.registry import CLASSIFIERS, MODELS, SEGMENTERS, check_model, get_classifier, get_model, get_segmenter
from mosaic.models.resnet import resnet18, resnet34
from mosaic.models.segmenter import Segmenter, segnet_small, segnet_small_half
from mosaic.models.vgg import vgg11_bn
from mosaic.models.wrn import wrn16_1, wrn16_2, wrn40_1, wrn40_2

__all__ = [
    "CLASSIFIERS", "Classifier", "get_classifier", "describe", "count_parameters",
    "lenet5", "lenet5_half", "cnn", "cnn_half", "resnet18", "resnet34",
    "wrn16_1", "wrn16_2", "wrn40_1", "wrn40_2", "vgg11_bn",
    "SEGMENTERS", "MODELS", "Segmenter", "get_segmenter", "get_model", "check_model", "segnet_small", "segnet_small_half",
    "Generator",
    "DISCRIMINATORS", "PatchDiscriminator", "FullImageDiscriminator", "get_discriminator",
    "receptive_field", "reachable_patch_sizes",
]
