"""Data: named datasets with their image spec, OOD sources, the adaptation rule, batching.

- ``get_dataset(name, split)`` -> ``ImageData`` (uint8 images on the CPU + labels + spec), for the
  names in ``DATASETS`` and ``folder:PATH`` (random crops of your own photos);
- ``adapt(data, spec)`` converts OOD images to the teacher's spec (the one rule, see ``adapt.py``);
- ``entropy_subset(data, teacher, n)`` keeps the n OOD images the teacher is least sure about;
- segmentation: ``fmnist_scenes`` and ``scenes:NAME`` (``compose_scenes``, see ``scenes.py``), and
  ``voc``, ``cityscapes``, ``nyuv2`` read from files (``dense.py``); masks are uint8, 255 = void;
- ``Batcher`` (shuffled, endless, resumable, augmenting) and ``iterate`` (evaluation) yield
  float [0, 1] batches on the device.
"""
from mosaic.data.adapt import adapt, adapt_images
from mosaic.data.batcher import Batcher, iterate
from mosaic.data.folder import load_folder
from mosaic.data.imagedata import DatasetNotFoundError, ImageData
from mosaic.data.registry import DATASETS, SPLITS, dataset_spec, get_dataset
from mosaic.data.scenes import compose_scenes
from mosaic.data.select import entropy_subset

__all__ = ["DATASETS", "SPLITS", "Batcher", "DatasetNotFoundError", "ImageData", "adapt", "adapt_images", "compose_scenes",
           "dataset_spec", "entropy_subset", "get_dataset", "iterate", "load_folder"]
