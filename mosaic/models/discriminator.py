"""Discriminators: a PatchGAN that judges local patches, and a full-image one for the ablation.

Receptive field (RF). For a stack of layers (kernel k_i, stride s_i), one unit of the last layer
sees an rf x rf window of input pixels, and neighbouring units are ``stride`` pixels apart:

    rf = 1, jump = 1;  for each layer: rf += (k - 1) * jump;  jump *= s;  stride = jump

Padding moves the window, never its size. ``PatchDiscriminator`` is built from the patch size you
ask for, and its ``.receptive_field`` is recomputed from the convolutions it actually contains
(the tests also measure it by backpropagation).

Patch layer spec: n stride-2 4x4 convs (n >= 1), then m stride-1 3x3 convs, then a 1x1 conv:
    rf = 3·2^n - 2 + m·2^(n+1),   stride = 2^n.
Since 3·2^n - 2 leaves remainder 2^n - 2 modulo 2^(n+1), each reachable size has exactly one
(n, m). Reachable sizes up to 64: 4, 8, 10, 12, 16, 18, 20, 22, 24, 26, 28, 32, 34, 36, 38, 40,
42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 64. The paper's default, n = 2, m = 0, is RF 10, stride 4.

Output map. Each 4x4 stride-2 conv has padding 1 and maps H to floor(H / 2); 3x3 convs have
padding 1 and keep H. So an H x H input gives a floor(H / 2^n) square map:
    patch size      n   28x28 input   32x32 input
    4..20 (4 | p)   1   14 x 14       16 x 16
    10, 18, 26 ...  2    7 x 7         8 x 8
    22, 38, 54      3    3 x 3         4 x 4
    46              4    1 x 1         2 x 2
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mosaic.config import D_NORMS, DISCRIMINATORS  # the one list of kinds and norms (RunConfig validates against them too)
from mosaic.spec import ImageSpec


def receptive_field(layers: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """(kernel, stride) per layer, input first -> (receptive field, stride) in input pixels."""
    rf, jump = 1, 1
    for kernel, stride in layers:
        rf += (kernel - 1) * jump
        jump *= stride
    return rf, jump


def _patch_layout(patch_size: int) -> tuple[int, int] | None:
    """(n stride-2 4x4 convs, m stride-1 3x3 convs) with RF ``patch_size``, or None."""
    n = 1
    while 3 * 2 ** n - 2 <= patch_size:
        extra = patch_size - (3 * 2 ** n - 2)
        if extra % 2 ** (n + 1) == 0:
            return n, extra // 2 ** (n + 1)
        n += 1
    return None


def reachable_patch_sizes(max_size: int = 64) -> list[int]:
    """Patch sizes PatchDiscriminator can build, up to ``max_size``."""
    return [p for p in range(1, max_size + 1) if _patch_layout(p) is not None]


def _conv_spec(net: nn.Module) -> tuple[tuple[int, int], ...]:
    """(effective kernel, stride) of every Conv2d in ``net``, in order (dilation d: d·(k-1)+1)."""
    return tuple(
        (m.dilation[0] * (m.kernel_size[0] - 1) + 1, m.stride[0])
        for m in net.modules()
        if isinstance(m, nn.Conv2d)
    )


def _width(ndf: int, i: int) -> int:
    """Channels after the i-th stride-2 conv: ndf doubling, capped at 8·ndf (DCGAN-style)."""
    return ndf * min(2 ** i, 8)


def _conv(c_in: int, c_out: int, kernel: int, stride: int, padding: int, norm: str, bias: bool) -> nn.Module:
    """A conv, its weight spectrally normalised when ``norm`` is "spectral" (then it keeps its bias: no BN follows)."""
    if norm == "spectral":
        return nn.utils.parametrizations.spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=True))
    return nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias)


def _norm_layer(c: int, norm: str) -> list[nn.Module]:
    return [nn.BatchNorm2d(c)] if norm == "batch" else []


def _downsampling_layers(in_channels: int, n: int, ndf: int, norm: str = "batch") -> tuple[list[nn.Module], int]:
    """n x [Conv4x4 stride 2 pad 1 -> (BN, not after the first) -> LeakyReLU(0.2)]; H -> H / 2^n.

    norm "spectral": no BN; every conv's weight is divided by its largest singular value (one power
    iteration per training forward; Miyato et al. 2018), which bounds D's Lipschitz constant."""
    layers: list[nn.Module] = []
    c_in = in_channels
    for i in range(n):
        c_out = _width(ndf, i)
        layers.append(_conv(c_in, c_out, 4, 2, 1, norm, bias=(i == 0)))
        if i > 0:
            layers += _norm_layer(c_out, norm)
        layers.append(nn.LeakyReLU(0.2))
        c_in = c_out
    return layers, c_in


class PatchDiscriminator(nn.Module):
    """Fully convolutional: (B, C, H, W) in [0, 1] -> (B, 1, h, w) logits, one per local patch.

    Each logit sees exactly a ``patch_size`` x ``patch_size`` window of the input (its receptive
    field); neighbouring logits are ``.stride`` pixels apart. Attributes: ``.layer_spec`` (kernel,
    stride) of every conv, ``.receptive_field``, ``.stride``. See the module docstring for the
    reachable sizes and the map size (``.output_size(H)``).
    """

    def __init__(self, in_channels: int, patch_size: int = 10, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        _check_norm(norm)
        layout = _patch_layout(patch_size)
        if layout is None:
            raise ValueError(
                f"patch_size {patch_size} cannot be built from 4x4 stride-2 and 3x3 stride-1 "
                f"convs; reachable sizes up to 64: {reachable_patch_sizes(64)} "
                f"(larger: 3·2^n - 2 + m·2^(n+1) for n >= 1, m >= 0)"
            )
        n, m = layout
        layers, c = _downsampling_layers(in_channels, n, ndf, norm)  # (B, c, H/2^n, W/2^n)
        for _ in range(m):  # widen the patch, keep the map size
            layers += [_conv(c, c, 3, 1, 1, norm, bias=False), *_norm_layer(c, norm), nn.LeakyReLU(0.2)]
        layers.append(_conv(c, 1, 1, 1, 0, norm, bias=True))  # (B, 1, H/2^n, W/2^n)
        self.net = nn.Sequential(*layers)
        self.patch_size = patch_size
        self.layer_spec = _conv_spec(self.net)
        self.receptive_field, self.stride = receptive_field(self.layer_spec)
        assert self.receptive_field == patch_size, (self.layer_spec, patch_size)

    def output_size(self, input_size: int) -> int:
        """Side of the logit map for an input_size x input_size image."""
        h = input_size
        for conv in (m for m in self.net if isinstance(m, nn.Conv2d)):
            h = (h + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, h, w)


class FullImageDiscriminator(nn.Module):
    """DCGAN-like: (B, C, S, S) in [0, 1] -> (B, 1, 1, 1), one logit that sees the whole image.

    4x4 stride-2 convs halve the map until it is at most 4x4, then one unpadded conv with a
    kernel as large as the remaining map gives a single logit (32: 32-16-8-4 -> 4x4 conv;
    28: 28-14-7-3 -> 3x3 conv). ``.receptive_field`` >= spec.size.
    """

    def __init__(self, spec: ImageSpec, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        _check_norm(norm)
        n, h = 0, spec.size
        while h > 4:
            n, h = n + 1, h // 2
        layers, c = _downsampling_layers(spec.channels, n, ndf, norm)  # (B, c, h, h)
        layers.append(_conv(c, 1, h, 1, 0, norm, bias=True))  # (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        self.spec = spec
        self.layer_spec = _conv_spec(self.net)
        self.receptive_field, self.stride = receptive_field(self.layer_spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, 1, 1)


def _check_norm(norm: str) -> None:
    if norm not in D_NORMS:
        raise ValueError(f"unknown discriminator norm {norm!r}; valid: {', '.join(D_NORMS)}")


def get_discriminator(
    kind: str, spec: ImageSpec, patch_size: int = 10, ndf: int = 64, norm: str = "batch"
) -> nn.Module | None:
    """"patch" -> PatchDiscriminator, "full" -> FullImageDiscriminator, "none" -> None.

    ``norm``: "batch" (BatchNorm after every conv but the first and last; DCGAN, the paper) or
    "spectral" (spectral normalisation of every conv, no BatchNorm)."""
    if kind == "patch":
        discriminator = PatchDiscriminator(spec.channels, patch_size, ndf, norm)
        if discriminator.output_size(spec.size) < 1:
            raise ValueError(
                f"patch_size {patch_size} downsamples by {discriminator.stride}, which leaves no "
                f"logit map for {spec.size}x{spec.size} images; use a smaller patch or kind='full'"
            )
        return discriminator
    if kind == "full":
        return FullImageDiscriminator(spec, ndf, norm)
    if kind == "none":
        return None
    raise ValueError(
        f"unknown discriminator kind {kind!r}; valid kinds: {', '.join(DISCRIMINATORS)}"
    )
