"""The dense (per-pixel) versions of the losses: logits (B, K, H, W).

Each is checked against a reference written here independently (pixels flattened into rows and fed
to torch built-ins, or an explicit per-pixel formula), and against the classification term at
H = W = 1 ((B, K) -> (B, K, 1, 1)), bit for bit.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mosaic import losses

g = torch.Generator().manual_seed(0)
B, K, H, W = 3, 5, 4, 6
S = torch.randn(B, K, H, W, generator=g) * 2
T = torch.randn(B, K, H, W, generator=g) * 2


def rows(x: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) -> (B·H·W, K): one row per pixel."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


@pytest.mark.parametrize("t_kd", [1.0, 4.0])
def test_dense_kd_is_the_mean_per_pixel_kl(t_kd):
    ref = F.kl_div(F.log_softmax(rows(S) / t_kd, 1), F.softmax(rows(T) / t_kd, 1), reduction="batchmean") * t_kd**2
    torch.testing.assert_close(losses.kd_loss(S, T, t_kd), ref)
    # one pixel by hand
    p_t, p_s = F.softmax(T[1, :, 2, 3], 0), F.softmax(S[1, :, 2, 3], 0)
    one = (p_t * (p_t.log() - p_s.log())).sum()
    torch.testing.assert_close(losses.kd_loss(S[1:2, :, 2:3, 3:4], T[1:2, :, 2:3, 3:4]), one)


def test_dense_adversarial_is_minus_per_pixel_kl():
    ref = -F.kl_div(F.log_softmax(rows(S), 1), F.softmax(rows(T), 1), reduction="batchmean")
    torch.testing.assert_close(losses.adversarial_loss(T, S), ref)


def test_dense_entropy_and_align_per_pixel():
    p = F.softmax(T, 1)
    per_pixel = -(p * p.log()).sum(1)  # (B, H, W)
    torch.testing.assert_close(losses.entropy(T), per_pixel)
    assert losses.entropy(T).shape == (B, H, W)
    torch.testing.assert_close(losses.align_loss(T), per_pixel.mean())


def test_dense_balance_uses_the_class_marginal_of_all_pixels():
    marginal = F.softmax(rows(T), 1).mean(0)  # (K,) over all B·H·W pixels
    torch.testing.assert_close(losses.balance_loss(T), (marginal * marginal.log()).sum())
    # each of 4 classes on a quarter of the 72 pixels: -log 4, although each pixel is one-hot
    onehot = F.one_hot(torch.arange(B * H * W) % 4, 4).float().view(B, H, W, 4).permute(0, 3, 1, 2) * 100
    assert math.isclose(losses.balance_loss(onehot).item(), -math.log(4), rel_tol=1e-5)


def test_balance_can_leave_one_class_out():
    """ignore_class=c: the negative entropy of the marginal over the other K - 1 classes, renormalised."""
    marginal = F.softmax(rows(T), 1).mean(0)  # (K,)
    kept = torch.cat([marginal[:2], marginal[3:]])
    kept = kept / kept.sum()
    torch.testing.assert_close(losses.balance_loss(T, ignore_class=2), (kept * kept.log()).sum())
    # the ignored class's share is free: 90% background or 10%, the term only sees the other classes' mix
    fg = torch.tensor([0.1, 0.3, 0.6])
    for bg in (0.9, 0.1):
        p = torch.cat([torch.tensor([bg]), (1 - bg) * fg])  # (4,) one marginal, background first
        logits = p.log().view(1, 4, 1, 1).expand(2, 4, 3, 3)
        assert math.isclose(losses.balance_loss(logits, ignore_class=0).item(), (fg * fg.log()).sum().item(),
                            rel_tol=1e-5)
    # -1 is the paper's term; the same batch_mean hook applies
    torch.testing.assert_close(losses.balance_loss(T, ignore_class=-1), losses.balance_loss(T))
    torch.testing.assert_close(losses.balance_loss(T, lambda r: r.mean(0), 0), losses.balance_loss(T, ignore_class=0))
    with pytest.raises(ValueError, match="ignore_class=5 is not a class"):
        losses.balance_loss(T, ignore_class=K)


def test_balance_with_a_prior_is_the_kl_to_it():
    """prior: KL(p̄ ‖ prior), 0 when the batch marginal is the prior; a uniform prior is the paper's term + log K."""
    marginal = F.softmax(rows(T), 1).mean(0)  # (K,)
    prior = torch.tensor([0.6, 0.1, 0.1, 0.1, 0.1])
    torch.testing.assert_close(losses.balance_loss(T, prior=prior), (marginal * (marginal / prior).log()).sum())
    torch.testing.assert_close(losses.balance_loss(T, prior=torch.full((K,), 1 / K)), losses.balance_loss(T) + math.log(K))
    at_prior = prior.log().view(1, K, 1, 1).expand(2, K, 3, 3)
    assert abs(losses.balance_loss(at_prior, prior=prior).item()) < 1e-6
    assert losses.balance_loss(T, prior=prior).item() > 0
    with pytest.raises(ValueError, match="prior must be a .5,. distribution"):
        losses.balance_loss(T, prior=torch.ones(3) / 3)
    with pytest.raises(ValueError, match="excludes ignore_class"):
        losses.balance_loss(T, ignore_class=0, prior=prior)


def test_dense_cross_entropy_ignores_void_pixels():
    y = torch.randint(0, K, (B, H, W), generator=g)
    y[0, 0] = losses.IGNORE_INDEX  # a void row
    keep = y != losses.IGNORE_INDEX
    ref = -F.log_softmax(S, 1).gather(1, y.clamp(max=K - 1).unsqueeze(1)).squeeze(1)[keep].mean()
    torch.testing.assert_close(losses.cross_entropy(S, y.to(torch.uint8)), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dense_terms_equal_classification_terms_at_1x1(dtype):
    s2, t2 = (torch.randn(16, 10, generator=g) * 3).to(dtype), (torch.randn(16, 10, generator=g) * 3).to(dtype)
    s4, t4 = s2[:, :, None, None], t2[:, :, None, None]  # (B, K) -> (B, K, 1, 1)
    for dense, flat in ((losses.kd_loss(s4, t4, 2.0), losses.kd_loss(s2, t2, 2.0)),
                        (losses.adversarial_loss(t4, s4), losses.adversarial_loss(t2, s2)),
                        (losses.align_loss(t4), losses.align_loss(t2)),
                        (losses.balance_loss(t4), losses.balance_loss(t2)),
                        (losses.entropy(t4).view(-1), losses.entropy(t2))):
        assert dense.dtype == torch.float32 and torch.equal(dense, flat)
    y = torch.randint(0, 10, (16,), generator=g)
    torch.testing.assert_close(losses.cross_entropy(s4, y.view(16, 1, 1)), losses.cross_entropy(s2, y))


def test_dense_gradients_equal_classification_gradients_at_1x1():
    t2 = torch.randn(8, 10, generator=g)
    a, b = t2.clone().requires_grad_(), t2[:, :, None, None].clone().requires_grad_()
    (losses.align_loss(a) + losses.balance_loss(a)).backward()
    (losses.align_loss(b) + losses.balance_loss(b)).backward()
    torch.testing.assert_close(b.grad.view(8, 10), a.grad, rtol=0, atol=1e-7)


def test_mismatched_or_3d_logits_are_refused():
    with pytest.raises(ValueError, match=r"\(B, K\) .* or \(B, K, H, W\)"):
        losses.kd_loss(S, T[:, :, :2])
    with pytest.raises(ValueError, match="all of one shape"):
        losses.align_loss(T[0])


def test_dense_balance_takes_a_batch_mean_over_pixel_rows():
    seen = {}

    def batch_mean(p):  # what a multi-process run passes: (N, K) -> (K,)
        seen["shape"] = tuple(p.shape)
        return p.mean(dim=0)

    torch.testing.assert_close(losses.balance_loss(T, batch_mean), losses.balance_loss(T))
    assert seen["shape"] == (B * H * W, K)
