"""Each loss against an independent reference computation (torch built-ins or a hand formula)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mosaic import losses

torch.manual_seed(0)
S = torch.randn(16, 10) * 2
T = torch.randn(16, 10) * 2


@pytest.mark.parametrize("t_kd", [1.0, 4.0])
def test_kd_loss_matches_kl_div(t_kd):
    ref = F.kl_div(F.log_softmax(S / t_kd, 1), F.softmax(T / t_kd, 1), reduction="batchmean") * t_kd**2
    assert torch.allclose(losses.kd_loss(S, T, t_kd), ref, atol=1e-6)


def test_kd_loss_is_zero_iff_equal_and_positive_otherwise():
    assert losses.kd_loss(T, T).abs() < 1e-6
    assert losses.kd_loss(S, T) > 0.1


def test_kd_loss_gradient_only_through_student():
    s = S.clone().requires_grad_()
    losses.kd_loss(s, T).backward()
    # d/ds KL(p_t || p_s) = (p_s - p_t) / B
    assert torch.allclose(s.grad, (F.softmax(S, 1) - F.softmax(T, 1)) / S.shape[0], atol=1e-6)


def test_discriminator_loss_matches_bce():
    real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    ref = F.binary_cross_entropy(torch.sigmoid(real), torch.ones_like(real)) + \
        F.binary_cross_entropy(torch.sigmoid(fake), torch.zeros_like(fake))
    assert torch.allclose(losses.discriminator_loss(real, fake), ref, atol=1e-5)


def test_local_loss_is_non_saturating_gan_term():
    fake = torch.randn(4, 1, 7, 7)
    ref = -torch.log(torch.sigmoid(fake)).mean()
    assert torch.allclose(losses.local_loss(fake), ref, atol=1e-5)


def test_hinge_losses_by_hand():
    real = torch.tensor([[[[2.0, 0.5]]], [[[-1.0, 1.0]]]])  # (2, 1, 1, 2) logit maps
    fake = torch.tensor([[[[-2.0, 0.0]]], [[[1.0, -0.5]]]])
    # D: mean max(0, 1 - real) = (0 + 0.5 + 2 + 0) / 4; mean max(0, 1 + fake) = (0 + 1 + 2 + 0.5) / 4
    assert losses.discriminator_loss(real, fake, "hinge").item() == pytest.approx(2.5 / 4 + 3.5 / 4)
    assert losses.local_loss(fake, "hinge").item() == pytest.approx(-(-2.0 + 0.0 + 1.0 - 0.5) / 4)
    assert torch.equal(losses.local_loss(fake, "bce"), losses.local_loss(fake))  # bce is the default
    with pytest.raises(ValueError, match="'bce' or 'hinge', got 'wgan'"):
        losses.discriminator_loss(real, fake, "wgan")


def test_r1_penalty_by_hand_for_discriminators_with_known_gradients():
    x = torch.randn(3, 2, 5, 4, requires_grad=True)
    # a one-logit D, s(x) = <a, x>: the gradient is a, the penalty ||a||^2
    a = torch.randn(2, 5, 4)
    assert losses.r1_penalty((x * a).sum(dim=(1, 2, 3)).view(3, 1, 1, 1), x).item() == pytest.approx(a.pow(2).sum().item(), rel=1e-5)
    # a patch map D(x) = x^2 (one logit per pixel of channel 0): s = mean x0^2, gradient 2 x0 / (H W)
    ref = (4 * x[:, 0].detach().pow(2).sum(dim=(1, 2)) / 20**2).mean()
    pen = losses.r1_penalty(x[:, :1].pow(2), x)
    assert pen.item() == pytest.approx(ref.item(), rel=1e-5)
    (g,) = torch.autograd.grad(pen, x)  # differentiable: d/dx0 mean_b 4 sum x0^2 / 400 = 8 x0 / (400 B)
    assert torch.allclose(g[:, 0], 8 * x[:, 0].detach() / 400 / 3, atol=1e-6) and g[:, 1].abs().max() == 0


def test_align_loss_is_mean_entropy():
    p = F.softmax(T, 1)
    ref = -(p * p.log()).sum(1).mean()
    assert torch.allclose(losses.align_loss(T), ref, atol=1e-6)
    assert losses.align_loss(torch.eye(10) * 100) < 1e-6  # confident → 0
    assert math.isclose(losses.align_loss(torch.zeros(3, 10)).item(), math.log(10), rel_tol=1e-6)  # uniform → log K


def test_balance_loss_is_negative_entropy_of_marginal():
    p_mean = F.softmax(T, 1).mean(0)
    assert torch.allclose(losses.balance_loss(T), (p_mean * p_mean.log()).sum(), atol=1e-6)
    # all classes equally often: minimum -log K; one class only: 0
    assert math.isclose(losses.balance_loss(torch.eye(10) * 100).item(), -math.log(10), rel_tol=1e-5)
    assert abs(losses.balance_loss(torch.zeros(8, 10).index_fill_(1, torch.tensor([3]), 100.0)).item()) < 1e-5


def test_adversarial_loss_is_negative_kd():
    assert torch.allclose(losses.adversarial_loss(T, S, 2.0), -losses.kd_loss(S, T, 2.0))


def test_losses_are_finite_under_bf16_inputs():
    for v in (losses.kd_loss(S.bfloat16(), T.bfloat16()), losses.align_loss(T.bfloat16()),
              losses.balance_loss(T.bfloat16())):
        assert v.dtype == torch.float32 and torch.isfinite(v)


# ----------------------------------------------------------------------------- one entropy, same numbers

def _old_align_loss(teacher_logits):
    """losses.align_loss before it called losses.entropy (the reference)."""
    log_p = F.log_softmax(teacher_logits.float(), dim=1)  # (B, K)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def _old_prediction_entropy(logits):
    """mosaic.data.select.prediction_entropy before it was replaced by losses.entropy (the reference)."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(16, 10), (256, 10), (7, 100)])
def test_align_loss_and_entropy_are_bit_identical_to_the_old_code(dtype, shape):
    g = torch.Generator().manual_seed(shape[0])
    logits = (torch.randn(*shape, generator=g) * 4).to(dtype)
    assert torch.equal(losses.align_loss(logits), _old_align_loss(logits))
    assert torch.equal(losses.entropy(logits), _old_prediction_entropy(logits))
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()  # the generator's gradient too
    losses.align_loss(a).backward()
    _old_align_loss(b).backward()
    assert a.grad.dtype == dtype and torch.equal(a.grad, b.grad)


def test_entropy_per_row_by_hand():
    p = F.softmax(T, 1)
    torch.testing.assert_close(losses.entropy(T), -(p * p.log()).sum(1))
    assert losses.entropy(T).shape == (16,) and losses.entropy(T.bfloat16()).dtype == torch.float32
