"""One game step per method: who gets updated, who stays frozen, and what the step returns."""
import contextlib
import copy

import pytest
import torch

from mosaic import game, losses
from mosaic.augment import augment
from mosaic.config import RunConfig
from mosaic.models import Generator, get_classifier, get_discriminator
from mosaic.spec import ImageSpec
from mosaic.teacher import freeze

SPEC = ImageSpec(1, 16, (0.5,), (0.25,), 10)


def make_players(cfg: RunConfig) -> game.Players:
    torch.manual_seed(0)
    teacher = freeze(get_classifier("cnn_half", SPEC))
    student = get_classifier("cnn_half", SPEC)
    p = game.Players(teacher=teacher, student=student, opt_s=torch.optim.SGD(student.parameters(), lr=0.1))
    if cfg.uses_generator:
        p.generator = Generator(SPEC, z_dim=cfg.z_dim, ngf=8)
        p.opt_g = torch.optim.Adam(p.generator.parameters(), lr=1e-3)
    if cfg.uses_discriminator:
        p.discriminator = get_discriminator(cfg.discriminator, SPEC, patch_size=cfg.patch_size, ndf=8)
        p.opt_d = torch.optim.Adam(p.discriminator.parameters(), lr=1e-3)
    return p


def streams(batch: int) -> game.Streams:
    return game.Streams(ood=lambda: torch.rand(batch, 1, 16, 16),
                        indomain=lambda: (torch.rand(batch, 1, 16, 16), torch.randint(0, 10, (batch,))))


def snapshot(m):
    return None if m is None else copy.deepcopy(m.state_dict())


def changed(m, before) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in m.state_dict().items() if v.is_floating_point())


EXPECTED_KEYS = {
    "mosaickd": {"loss_d", "loss_g", "loss_s", "loss_local", "loss_align", "loss_balance", "loss_adv", "d_real", "d_fake", "teacher_conf"},
    "datafree": {"loss_g", "loss_s", "loss_align", "loss_balance", "loss_adv", "teacher_conf"},
    "kd_ood": {"loss_s"}, "kd_indomain": {"loss_s"}, "scratch": {"loss_s"},
}


@pytest.mark.parametrize("method", list(EXPECTED_KEYS))
def test_step_updates_the_right_players_and_never_the_teacher(method):
    cfg = RunConfig(method=method, batch_size=8, kd_steps=2, z_dim=16)
    p = make_players(cfg)
    before = {k: snapshot(getattr(p, k)) for k in ("teacher", "student", "generator", "discriminator")}
    out = game.step(p, streams(8), cfg, "cpu")
    assert set(out) == EXPECTED_KEYS[method]
    assert all(isinstance(v, float) for v in out.values())
    assert changed(p.student, before["student"])
    assert not changed(p.teacher, before["teacher"])
    assert all(q.grad is None for q in p.teacher.parameters())
    if p.generator is not None:
        assert changed(p.generator, before["generator"])
    if p.discriminator is not None:
        assert changed(p.discriminator, before["discriminator"])
        assert 0 < out["d_real"] < 1 and 0 < out["d_fake"] < 1


def test_generator_loss_is_the_weighted_sum_of_its_terms():
    cfg = RunConfig(w_local=0.5, w_align=2.0, w_balance=3.0, w_adv=0.7, z_dim=16)
    p = make_players(cfg)
    x = p.generator(torch.randn(8, 16))
    t = game.generator_losses(p, x, cfg, use_local=True)
    ref = 0.5 * t["loss_local"] + 2.0 * t["loss_align"] + 3.0 * t["loss_balance"] + 0.7 * t["loss_adv"]
    assert torch.allclose(t["loss_g"], ref)


def test_t_adv_sets_the_adversarial_terms_temperature_alone_and_0_means_t_kd():
    x = torch.rand(8, 1, 16, 16)
    terms = {}
    for t_kd, t_adv in ((1.0, 0.0), (4.0, 0.0), (4.0, 1.0), (1.0, 4.0)):
        cfg = RunConfig(t_kd=t_kd, t_adv=t_adv, z_dim=16)
        terms[t_kd, t_adv] = game.generator_losses(make_players(cfg), x, cfg, use_local=True)
    p = make_players(RunConfig(z_dim=16))
    with torch.no_grad():
        t_logits, s_logits = p.teacher(x), p.student(x)
    for (t_kd, t_adv), t in terms.items():
        assert torch.allclose(t["loss_adv"], losses.adversarial_loss(t_logits, s_logits, t_adv or t_kd))
        for name in ("loss_local", "loss_align", "loss_balance"):  # the temperature touches no other term
            assert torch.equal(t[name], terms[1.0, 0.0][name])
    assert torch.equal(terms[4.0, 1.0]["loss_adv"], terms[1.0, 0.0]["loss_adv"])
    assert not torch.allclose(terms[1.0, 4.0]["loss_adv"], terms[1.0, 0.0]["loss_adv"])
    with pytest.raises(ValueError, match="t_adv=4.0 is the temperature of the generator's adversarial term"):
        RunConfig(method="kd_ood", t_adv=4.0)
    with pytest.raises(ValueError, match="t_adv must be a finite number"):
        RunConfig(t_adv=-1.0)


def test_d_loss_d_r1_and_d_augment_shape_only_the_patch_game():
    x_real, x_fake = torch.rand(8, 1, 16, 16), torch.rand(8, 1, 16, 16)
    grads = {}
    for kw in ({}, {"d_r1": 2.0}, {"d_loss": "hinge"}, {"d_augment": "translation+cutout"},
               {"d_r1": 2.0, "d_augment": "cutout"}):
        cfg = RunConfig(z_dim=16, patch_size=4, **kw)
        p = make_players(cfg)
        p.opt_d = torch.optim.SGD(p.discriminator.parameters(), lr=0.0)  # keep D's weights to read its gradient
        torch.manual_seed(5)
        out = game.discriminator_update(p, x_real, x_fake, cfg, contextlib.nullcontext())
        grads[tuple(kw.items())] = [q.grad.clone() for q in p.discriminator.parameters()]
        # the reference: the same loss written out with the loss functions, by autograd (same draws: real, then fake)
        d = copy.deepcopy(p.discriminator)
        d.zero_grad()
        xr = x_real.clone().requires_grad_(True)
        torch.manual_seed(5)
        d_real = d(augment(xr, cfg.d_augment))
        d_fake = d(augment(x_fake, cfg.d_augment))
        ref = losses.discriminator_loss(d_real, d_fake, cfg.d_loss)
        if cfg.d_r1:
            assert out["d_r1"].item() == pytest.approx(losses.r1_penalty(d_real, xr).item(), rel=1e-5)
            ref = ref + 0.5 * cfg.d_r1 * losses.r1_penalty(d_real, xr)
        assert out["loss_d"].item() == pytest.approx(ref.item(), rel=1e-5)
        ref.backward()
        for q, r in zip(grads[tuple(kw.items())], d.parameters()):
            assert torch.allclose(q, r.grad, atol=1e-6)
    base = grads[()]
    assert any(not torch.allclose(a, b) for a, b in zip(grads[(("d_r1", 2.0),)], base))
    assert any(not torch.allclose(a, b) for a, b in zip(grads[(("d_augment", "translation+cutout"),)], base))
    cfg = RunConfig(z_dim=16, patch_size=4, d_loss="hinge", d_r1=1.0, batch_size=8, kd_steps=1)
    p = make_players(cfg)
    before = {k: snapshot(getattr(p, k)) for k in ("teacher", "student", "generator", "discriminator")}
    out = game.step(p, streams(8), cfg, "cpu")
    assert set(out) == EXPECTED_KEYS["mosaickd"] | {"d_r1"} and out["d_r1"] > 0
    assert not changed(p.teacher, before["teacher"]) and all(changed(getattr(p, k), before[k])
                                                             for k in ("student", "generator", "discriminator"))
    # hinge: the generator's patch term is -mean D(x)
    x = p.generator(torch.randn(8, 16))
    assert torch.allclose(game.generator_losses(p, x, cfg, use_local=True)["loss_local"], -p.discriminator(x).mean())
    # d_augment: the generator's patch term reads D through the same transforms, drawn after D's update's
    cfg = cfg.replace(d_augment="translation+cutout")
    torch.manual_seed(6)
    local = game.generator_losses(p, x, cfg, use_local=True)["loss_local"]
    torch.manual_seed(6)
    assert torch.allclose(local, -p.discriminator(augment(x, cfg.d_augment)).mean())
    assert not torch.allclose(local, -p.discriminator(x).mean())
    before = {k: snapshot(getattr(p, k)) for k in ("teacher", "student", "generator", "discriminator")}
    game.step(p, streams(8), cfg, "cpu")
    assert not changed(p.teacher, before["teacher"]) and all(changed(getattr(p, k), before[k])
                                                             for k in ("student", "generator", "discriminator"))
    with pytest.raises(ValueError, match="d_r1=1.0, d_augment='none' shape the patch GAN"):
        RunConfig(method="datafree", d_r1=1.0)
    with pytest.raises(ValueError, match="d_loss='hinge'.*discriminator='none' has none"):
        RunConfig(discriminator="none", d_loss="hinge")
    with pytest.raises(ValueError, match="d_loss='wgan' is not valid; choose one of bce, hinge"):
        RunConfig(d_loss="wgan")
    with pytest.raises(ValueError, match="d_r1 must be a finite number >= 0"):
        RunConfig(d_r1=-1.0)


def test_no_discriminator_means_no_local_term():
    cfg = RunConfig(discriminator="none", batch_size=8, kd_steps=1, z_dim=16)
    p = make_players(cfg)
    assert p.discriminator is None
    out = game.step(p, streams(8), cfg, "cpu")
    assert "loss_local" not in out and "loss_d" not in out


def test_no_param_grads_restores_flags_and_blocks_parameter_gradients():
    net = torch.nn.Linear(3, 3)
    net.bias.requires_grad_(False)
    x = torch.randn(2, 3, requires_grad=True)
    with game.no_param_grads(net):
        net(x).sum().backward()
    assert net.weight.grad is None and x.grad is not None
    assert net.weight.requires_grad and not net.bias.requires_grad


def test_frozen_teacher_stays_in_eval_mode():
    p = make_players(RunConfig(method="kd_ood"))
    p.teacher.train()
    torch.nn.Sequential(p.teacher).train()
    assert not p.teacher.training and not any(m.training for m in p.teacher.modules())
    assert not any(q.requires_grad for q in p.teacher.parameters())


def test_bf16_autocast_step_runs_and_is_finite():
    cfg = RunConfig(method="mosaickd", precision="bf16", batch_size=8, kd_steps=1, z_dim=16)
    out = game.step(make_players(cfg), streams(8), cfg, "cpu")
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())


def test_fp16_on_cpu_is_refused_with_advice():
    with pytest.raises(ValueError, match="bf16"):
        game.autocast("cpu", "fp16")


def test_viz_sample_is_seeded_and_leaves_the_generator_untouched():
    from mosaic import viz
    gen = Generator(SPEC, z_dim=16, ngf=8).eval()
    before = copy.deepcopy(gen.state_dict())
    a, b = viz.sample(gen, 6, 16, seed=3), viz.sample(gen, 6, 16, seed=3)
    assert a.shape == (6, 1, 16, 16) and torch.equal(a, b)
    assert not gen.training and all(torch.equal(v, before[k]) for k, v in gen.state_dict().items())
    grid = viz.image_grid(a, nrow=3)
    assert grid.shape == (2 * 17 + 1, 3 * 17 + 1, 3) and grid.min() >= 0 and grid.max() <= 1


def test_student_ood_switch_controls_the_student_batch():
    seen = []
    for flag in (True, False):
        cfg = RunConfig(batch_size=8, kd_steps=1, z_dim=16, student_ood=flag)
        p = make_players(cfg)
        real_update = game.student_kd_update
        game.student_kd_update = lambda players, x, cfg, amp: seen.append(x.shape[0]) or real_update(players, x, cfg, amp)
        try:
            game.step(p, streams(8), cfg, "cpu")
        finally:
            game.student_kd_update = real_update
    assert seen == [16, 8]


def test_gan_warmup_step_trains_only_the_generator_and_discriminator_on_the_local_term():
    cfg = RunConfig(method="mosaickd", batch_size=8, z_dim=16, patch_size=4, warmup_gan=5)
    p = make_players(cfg)
    before = {name: snapshot(getattr(p, name)) for name in ("teacher", "student", "generator", "discriminator")}
    out = game.step(p, streams(8), cfg, "cpu", warmup=True)
    assert set(out) == {"loss_d", "d_real", "d_fake", "loss_local"}
    assert changed(p.generator, before["generator"]) and changed(p.discriminator, before["discriminator"])
    assert not changed(p.student, before["student"]) and not changed(p.teacher, before["teacher"])
    assert all(q.grad is None for q in p.student.parameters())  # the student never took part


def test_warmup_gan_needs_a_discriminator_and_warmup_s_is_a_fraction_of_the_run():
    with pytest.raises(ValueError, match="warmup_gan=3 needs a discriminator"):
        RunConfig(method="kd_ood", warmup_gan=3)
    with pytest.raises(ValueError, match="warmup_gan=3 needs a discriminator"):
        RunConfig(method="mosaickd", discriminator="none", warmup_gan=3)
    with pytest.raises(ValueError, match=r"in \[0, 1\), got 50.*is warmup_s=0.25"):
        RunConfig(steps=200, warmup_s=50)  # iterations, as before: the error says the fraction
    with pytest.raises(ValueError, match=r"in \[0, 1\), got 1.0$"):
        RunConfig(steps=200, warmup_s=1)
    with pytest.raises(ValueError, match=r"in \[0, 1\), got -0.1$"):
        RunConfig(warmup_s=-0.1)
    assert RunConfig(steps=200).warmup_iterations == 50  # the default, 0.25 of the run
    assert RunConfig(steps=4, warmup_s=0.5).warmup_iterations == 2
    assert RunConfig(steps=200, warmup_s=0).warmup_iterations == 0  # the paper: no warm-up
