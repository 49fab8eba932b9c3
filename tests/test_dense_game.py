"""The game on a dense task: the same ``game.step`` plays the scene segmentation task with the small
segmenter pair; only the right players change and the teacher stays bit-identical."""
import copy

import pytest
import torch

from mosaic import build, game
from mosaic.config import RunConfig
from mosaic.data import DatasetNotFoundError, dataset_spec
from mosaic.models import Segmenter, get_model
from mosaic.teacher import freeze

EXPECTED_KEYS = {
    "mosaickd": {"loss_d", "loss_g", "loss_s", "loss_local", "loss_align", "loss_balance", "loss_adv", "d_real",
                 "d_fake", "teacher_conf"},
    "datafree": {"loss_g", "loss_s", "loss_align", "loss_balance", "loss_adv", "teacher_conf"},
    "kd_ood": {"loss_s"}, "kd_indomain": {"loss_s"}, "scratch": {"loss_s"},
}


def config(method: str, **kw) -> RunConfig:
    return RunConfig(method=method, dataset="fmnist_scenes", ood="scenes:mnist5k", teacher="segnet_small",
                     student="segnet_small_half", batch_size=4, kd_steps=2, z_dim=16, ngf=8, ndf=8, **kw)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return freeze(get_model("segnet_small", dataset_spec("fmnist_scenes")))


def state(m):
    return None if m is None else copy.deepcopy(m.state_dict())  # weights and BatchNorm statistics


def changed(m, before) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in m.state_dict().items() if v.is_floating_point())


@pytest.mark.parametrize("method", list(EXPECTED_KEYS))
def test_dense_step_updates_only_the_right_players_and_the_teacher_is_bit_identical(method, teacher):
    cfg = config(method)
    torch.manual_seed(1)
    try:
        players = build.build_players(cfg, teacher, "cpu")
        streams, _, _ = build.build_streams(cfg, teacher, "cpu")
    except DatasetNotFoundError:
        pytest.skip("needs Fashion-MNIST (data/FashionMNIST or apt-get install dataset-fashion-mnist)")
    assert isinstance(players.student, Segmenter) and players.student.name == "segnet_small_half"
    before = {k: state(getattr(players, k)) for k in ("teacher", "student", "generator", "discriminator")}
    out = game.step(players, streams, cfg, "cpu")
    assert set(out) == EXPECTED_KEYS[method] and all(isinstance(v, float) and v == v for v in out.values())
    assert changed(players.student, before["student"])
    teacher_now = players.teacher.state_dict()
    assert all(torch.equal(v, before["teacher"][k]) for k, v in teacher_now.items())  # bit for bit, buffers too
    assert all(p.grad is None for p in players.teacher.parameters()) and not players.teacher.training
    for role in ("generator", "discriminator"):
        m = getattr(players, role)
        assert (m is not None) == (role == "generator" and cfg.uses_generator or
                                   role == "discriminator" and cfg.uses_discriminator)
        if m is not None:
            assert changed(m, before[role])
    if method in ("mosaickd", "datafree"):
        assert players.generator(torch.randn(2, 16)).shape == (2, 1, 64, 64)  # the teacher's input size
        assert 0 <= out["loss_align"] <= torch.log(torch.tensor(11.0)).item() + 1e-5  # per-pixel entropy, 11 classes
        assert -torch.log(torch.tensor(11.0)).item() - 1e-5 <= out["loss_balance"] <= 0


def test_dense_generator_terms_are_the_per_pixel_losses(teacher):
    from mosaic import losses

    cfg = config("mosaickd")
    torch.manual_seed(2)
    players = build.build_players(cfg, teacher, "cpu")
    x = players.generator(torch.randn(3, 16))  # (3, 1, 64, 64)
    terms = game.generator_losses(players, x, cfg, use_local=True)
    t, s = teacher(x), players.student(x)  # (3, 11, 64, 64) each
    assert t.shape == s.shape == (3, 11, 64, 64)
    torch.testing.assert_close(terms["loss_align"], losses.entropy(t).mean())
    torch.testing.assert_close(terms["loss_adv"], -losses.kd_loss(s, t))
    ref = (cfg.w_local * terms["loss_local"] + cfg.w_align * terms["loss_align"]
           + cfg.w_balance * terms["loss_balance"] + cfg.w_adv * terms["loss_adv"])
    torch.testing.assert_close(terms["loss_g"], ref)


def test_the_generator_balance_term_follows_balance_bg(teacher):
    from mosaic import losses

    torch.manual_seed(2)
    players = build.build_players(config("mosaickd"), teacher, "cpu")
    x = players.generator(torch.randn(3, 16))  # (3, 1, 64, 64)
    t = teacher(x)

    def balance(**kw):
        return game.generator_losses(players, x, config("mosaickd", **kw), use_local=False)["loss_balance"]

    torch.testing.assert_close(balance(), losses.balance_loss(t))  # "class": the paper's term
    torch.testing.assert_close(balance(balance_bg="free"), losses.balance_loss(t, ignore_class=0))
    players.balance_prior = torch.tensor([0.9] + [0.01] * 10)
    torch.testing.assert_close(balance(balance_bg="ood"), losses.balance_loss(t, prior=players.balance_prior))
    assert len({balance(balance_bg=b).item() for b in ("free", "ood")} | {losses.balance_loss(t).item()}) == 3


def test_background_prior_pins_the_teachers_background_share_on_ood(teacher):
    from mosaic.data import get_dataset

    ood = get_dataset("scenes:mnist5k", "train")
    prior = build.background_prior(teacher, ood, "cpu", n=40, batch=16)
    with torch.no_grad():
        share = torch.softmax(teacher(ood.images[:40].float() / 255), 1)[:, 0].mean()
    assert prior.shape == (11,) and prior.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert prior[0].item() == pytest.approx(share.item(), abs=1e-5)
    assert torch.allclose(prior[1:], torch.full((10,), (1 - share.item()) / 10), atol=1e-6)
    with pytest.raises(ValueError, match="class 0 is 'T-shirt/top': set balance_bg='class'"):
        build.check_background(RunConfig(balance_bg="free", method="mosaickd"), ("T-shirt/top", "Trouser"))
    build.check_background(config("mosaickd", balance_bg="ood"), ("background", "T-shirt/top"))
