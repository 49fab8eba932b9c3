"""mosaic.augment: each transform against a brute-force reference, gradients, "none" and the policy parser."""
import pytest
import torch

from mosaic.augment import augment, cutout, translation
from mosaic.config import RunConfig


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The reference: out[:, i, j] = x[:, i + dy, j + dx] where that pixel exists, else 0, by loops."""
    C, H, W = x.shape
    out = torch.zeros_like(x)
    for i in range(H):
        for j in range(W):
            if 0 <= i + dy < H and 0 <= j + dx < W:
                out[:, i, j] = x[:, i + dy, j + dx]
    return out


def holed(x: torch.Tensor, cy: int, cx: int, h: int, w: int) -> torch.Tensor:
    """The reference: x with rows [cy - h//2, cy - h//2 + h) x cols [cx - w//2, ...) set to 0 (clipped), by slicing."""
    out = x.clone()
    out[:, max(cy - h // 2, 0):max(cy - h // 2 + h, 0), max(cx - w // 2, 0):max(cx - w // 2 + w, 0)] = 0
    return out


def test_translation_is_a_zero_filled_shift_within_an_eighth_of_the_size():
    torch.manual_seed(0)
    x = torch.rand(24, 2, 16, 12) + 0.1  # no zero pixels: a shift is told apart from its neighbours
    out = translation(x)
    shifts = set()
    for b in range(len(x)):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)  # round(16/8) = 2, round(12/8) = 2 (1.5 rounds up)
                   if torch.equal(out[b], shifted(x[b], dy, dx))]
        assert len(matches) == 1, f"image {b} is no shift of its input within the range"
        shifts.add(matches[0])
    assert len(shifts) > 5  # drawn per image
    assert (out == 0).any()


def test_cutout_zeroes_one_half_size_square_per_image():
    torch.manual_seed(1)
    x = torch.rand(24, 3, 10, 8) + 0.1
    out = cutout(x)
    centres = set()
    for b in range(len(x)):
        matches = [(cy, cx) for cy in range(10) for cx in range(8) if torch.equal(out[b], holed(x[b], cy, cx, 5, 4))]
        assert len(matches) == 1, f"image {b} is not its input with one 5x4 square (clipped) set to 0"
        centres.add(matches[0])
    assert len(centres) > 5


def test_transforms_are_differentiable_and_keep_dtype_and_shape():
    torch.manual_seed(2)
    x = torch.rand(6, 1, 28, 28, requires_grad=True)
    out = augment(x, "translation+cutout")
    assert out.shape == x.shape
    out.sum().backward()
    # each input pixel reaches the output at most once, as itself: its gradient is 1 where it survives, else 0
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}
    assert x.grad.sum() == (out.detach() != 0).sum()  # x > 0 a.s., so nonzero outputs are the surviving pixels
    xb = torch.rand(4, 1, 28, 28).bfloat16().to(memory_format=torch.channels_last)
    assert augment(xb, "translation+cutout").dtype == torch.bfloat16


def test_none_is_the_identity_and_draws_nothing():
    x = torch.rand(3, 1, 8, 8)
    state = torch.get_rng_state()
    assert augment(x, "none") is x
    assert torch.equal(torch.get_rng_state(), state)


def test_policy_is_validated_by_the_config():
    assert RunConfig(d_augment="cutout+translation").d_augment == "cutout+translation"
    with pytest.raises(ValueError, match="d_augment='flip': 'flip' is not a policy; use 'none' or one or more of "
                                         "translation, cutout joined by '\\+'"):
        RunConfig(d_augment="flip")
    with pytest.raises(ValueError, match="'' is not a policy"):
        RunConfig(d_augment="translation+")
    with pytest.raises(ValueError, match="d_augment='cutout' shape the patch GAN.*set d_loss='bce', d_r1=0, d_augment='none'"):
        RunConfig(method="kd_ood", d_augment="cutout")
