"""What the benchmarks run on: the offline pairs (quality, parity, the sweep) and the speed presets.

One definition each; every benchmark module and script imports them from here.

- ``PAIRS``: "in-domain <- OOD" pairs that need no download, as RunConfig fields (the teacher too; its budget is
  RunConfig's auto one, ``teacher.AUTO_ITERATIONS``).
- ``PRESETS``: the speed benchmark's settings, as RunConfig fields over the defaults.
- ``CIFAR100_SPEC``: the registry's CIFAR-100 spec, for the ``paper`` preset's random-init networks on
  synthetic images (no CIFAR-100 files needed).
"""
from __future__ import annotations

from typing import Any

from mosaic.config import RunConfig
from mosaic.data import dataset_spec
from mosaic.spec import ImageSpec

PAIRS: dict[str, dict[str, Any]] = {
    "fmnist<-mnist5k": dict(dataset="fmnist", ood="mnist5k", teacher="lenet5", student="lenet5_half"),
    "mnist5k<-fmnist": dict(dataset="mnist5k", ood="fmnist", teacher="lenet5", student="lenet5_half"),
    "fmnist<-photos": dict(dataset="fmnist", ood="folder:data/skimage_photos", teacher="lenet5", student="lenet5_half"),
}

PRESETS: dict[str, dict[str, Any]] = {  # RunConfig fields per preset (default: the RunConfig defaults)
    "default": {},
    "paper": dict(dataset="cifar100", ood="synthetic", teacher="wrn40_2", student="wrn16_1", batch_size=256,
                  kd_steps=5, ngf=128, ndf=128),
}

CIFAR100_SPEC: ImageSpec = dataset_spec("cifar100")  # what a CIFAR-100 teacher expects, without the files


def pair_config(pair: str, **fields: Any) -> RunConfig:
    """The RunConfig of ``pair`` with ``fields`` on top (a KeyError names the valid pairs)."""
    if pair not in PAIRS:
        raise KeyError(f"unknown pair {pair!r}; choose one of {', '.join(PAIRS)}")
    return RunConfig(**{**PAIRS[pair], **fields})


__all__ = ["PAIRS", "PRESETS", "CIFAR100_SPEC", "pair_config"]
