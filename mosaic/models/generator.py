"""The MosaicKD generator: noise z -> image in [0, 1].

    z (B, z_dim)
    -> Linear -> reshape               (B, 2·ngf, s/4, s/4)
    -> BN
    -> Upsample x2 (nearest) -> Conv3x3 -> BN -> LeakyReLU(0.2)   (B, 2·ngf, s/2, s/2)
    -> Upsample x2 (nearest) -> Conv3x3 -> BN -> LeakyReLU(0.2)   (B, ngf, s, s)
    -> Conv3x3 -> Sigmoid              (B, C, s, s) in [0, 1]

The output stays in [0, 1] like every image in the library; the classifiers normalise it
themselves. The paper uses ngf = 128 (2,544,259 parameters for 3x32x32 with z_dim = 100).
"""
from __future__ import annotations

import torch
from torch import nn

from mosaic.spec import ImageSpec


class Generator(nn.Module):
    """forward(z): (B, z_dim) -> images (B, spec.channels, spec.size, spec.size) in [0, 1]."""

    def __init__(self, spec: ImageSpec, z_dim: int = 100, ngf: int = 64) -> None:
        super().__init__()
        if spec.size % 4:
            raise ValueError(
                f"Generator upsamples twice by 2, so spec.size must be a multiple of 4 "
                f"(e.g. 8, 28, 32, 64, 96); got {spec.size}"
            )
        self.spec, self.z_dim, self.ngf = spec, z_dim, ngf
        self.init_size = spec.size // 4
        self.project = nn.Linear(z_dim, 2 * ngf * self.init_size ** 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(2 * ngf),
            nn.Upsample(scale_factor=2, mode="nearest"),  # (B, 2·ngf, s/2, s/2)
            nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * ngf),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2, mode="nearest"),  # (B, 2·ngf, s, s)
            nn.Conv2d(2 * ngf, ngf, 3, padding=1, bias=False),  # (B, ngf, s, s)
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ngf, spec.channels, 3, padding=1),  # (B, C, s, s)
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(
                f"Generator expects z of shape (B, {self.z_dim}), got {tuple(z.shape)}"
            )
        s4 = self.init_size
        h = self.project(z).view(z.shape[0], 2 * self.ngf, s4, s4)  # (B, 2·ngf, s/4, s/4)
        return self.body(h)  # (B, C, s, s)
