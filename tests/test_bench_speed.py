"""The speed benchmark: its reference loop against the library step, its variants, its bookkeeping."""
import copy
import csv
import subprocess
import sys

import pytest
import torch

from mosaic import build, game, train
from mosaic.bench import pairs, reference, speed, timing, variants
from mosaic.config import RunConfig
from mosaic.data import Batcher, ImageData, get_dataset
from mosaic.data.registry import _REGISTRY
from mosaic.models import get_classifier
from mosaic.models.pool import MaxPool2x2
from mosaic.spec import ImageSpec
from mosaic.teacher import freeze
from mosaic.build import build_players

SPEC = ImageSpec(1, 16, (0.5,), (0.25,), 10)
G_TERMS = ("loss_align", "loss_balance", "loss_adv")  # depend only on x = G(z), T and S before any update


def tiny_cfg(**kw) -> RunConfig:
    return RunConfig(**{**dict(teacher="cnn_half", student="cnn_half", batch_size=16, kd_steps=2, z_dim=16, ngf=8,
                               ndf=8, device="cpu"), **kw})


def tiny_ood(n: int = 64) -> ImageData:
    images = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageData("rand", "train", images, None, ImageSpec(1, 16, (0.5,), (0.25,)), (), hflip=False)


def two_paths(cfg: RunConfig, library_pooling: bool = False):
    """Library players and an identical copy driven by the reference loop (same init)."""
    torch.manual_seed(0)
    teacher = freeze(get_classifier(cfg.teacher, SPEC))
    players = build_players(cfg, teacher, "cpu")
    loop = reference.ReferenceLoop(copy.deepcopy(players), reference.ood_loader(tiny_ood(), cfg.batch_size), cfg, "cpu",
                                    library_pooling=library_pooling)
    batcher = Batcher(tiny_ood(), cfg.batch_size, seed=1, augment=True)
    return players, game.Streams(ood=lambda: next(batcher)[0]), loop


def test_reference_loop_and_library_step_give_the_same_losses_from_the_same_init():
    cfg = tiny_cfg()
    players, streams, loop = two_paths(cfg)
    torch.manual_seed(1)
    lib = game.step(players, streams, cfg, "cpu")
    torch.manual_seed(1)
    ref = loop.step()
    assert set(ref) <= set(lib) and {"loss_d", "loss_g", "loss_s", "loss_local", *G_TERMS} <= set(ref)
    for k in G_TERMS:  # same z, same networks before their updates -> the same numbers
        assert ref[k] == pytest.approx(lib[k], rel=1e-5, abs=1e-6), k
    for k in ("loss_d", "loss_local", "loss_g", "loss_s"):  # other real batches, then updates: same magnitude
        assert abs(ref[k] - lib[k]) <= 0.5 * max(abs(ref[k]), abs(lib[k])) + 0.05, (k, ref[k], lib[k])


def test_reference_teacher_gets_gradients_like_the_original_and_the_library_teacher_does_not():
    cfg = tiny_cfg()
    players, streams, loop = two_paths(cfg)
    game.step(players, streams, cfg, "cpu")
    loop.step()
    assert all(p.grad is None and not p.requires_grad for p in players.teacher.parameters())
    assert all(p.grad is not None for p in loop.teacher.parameters())
    assert not loop.teacher.training  # eval mode, like the original


def test_reference_batches_are_pil_transformed_images_in_unit_range():
    data = tiny_ood(32)
    x = next(iter(reference.ood_loader(data, 8)))
    assert x.shape == (8, 1, 16, 16) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    pad = max(1, 16 // 8)  # the Batcher's padding rule
    assert reference.ood_transform(data).transforms[0].padding == pad


def test_variant_names_parse_in_canonical_order_with_their_parents():
    v = variants.parse_variant("library+cl+bf16")
    assert v.name == "library+bf16+cl" and v.precision == "bf16"
    assert {p.name for p in v.parents()} == {"library+bf16", "library+cl"}
    assert variants.parse_variant("library").parents() == [variants.Variant("reference")]
    w = variants.parse_variant("reference+w2")
    assert w.loader_workers == 2 and w.name == "reference+w2" and w.parents() == [variants.Variant("reference")]
    lp = variants.parse_variant("reference+w2+libpool")
    assert lp.name == "reference+libpool+w2" and lp.loader_workers == 2
    for bad in ("library+avx", "reference+bf16", "library+bf16+fp16", "plain", "library+fold", "reference+w2+w4",
                "reference+libpool+libpool", "library+libpool"):
        with pytest.raises(ValueError):
            variants.parse_variant(bad)


def test_summary_ratios_are_same_round_medians_and_helps_needs_five_percent():
    m, v = timing.Measurement, variants.parse_variant
    ms = [m(v("reference"), [2.0, 4.0, 2.0]),
          m(v("library"), [1.0, 2.0, 1.0]),  # ratio 2 every round
          m(v("library+bf16"), [0.98, 1.96, 0.98]),  # ratio 2.04: < 5 % over its parent
          m(v("library+cl"), [0.5, 1.0, 0.5])]  # ratio 4
    rows = {r["variant"]: r for r in speed.speed_rows(ms, steps=4, warmup=1)}
    assert rows["reference"]["ratio"] == 1.0 and rows["reference"]["helps"] == ""
    assert rows["library"]["ratio"] == 2.0 and rows["library"]["helps"] == "yes"
    assert rows["library"]["steps_per_s"] == 4.0 and rows["library"]["steps_per_s_min"] == 2.0
    assert rows["library+bf16"]["ratio"] == pytest.approx(2 / 0.98) and rows["library+bf16"]["helps"] == "no"
    assert rows["library+cl"]["ratio"] == 4.0 and rows["library+cl"]["helps"] == "yes"


def test_phase_clock_times_a_step_without_changing_its_numbers():
    cfg = tiny_cfg()
    players, streams, _ = two_paths(cfg)
    twin, twin_batcher = copy.deepcopy(players), Batcher(tiny_ood(), cfg.batch_size, seed=1, augment=True)
    clock, clocked = timing.PhaseClock("cpu"), []
    clock.attach(players, streams)
    torch.manual_seed(2)
    clock.run(lambda: clocked.append(game.step(players, streams, cfg, "cpu")), 1)
    torch.manual_seed(2)
    plain = game.step(twin, game.Streams(ood=lambda: next(twin_batcher)[0]), cfg, "cpu")
    assert clocked[0] == plain
    ms = clock.per_step_ms()
    assert set(ms) == set(timing.PHASES) == {"data", "D", "G", "S_synth", "S", "other"} and clock.steps == 1
    assert all(v >= 0 for v in ms.values()) and all(ms[k] > 0 for k in ("data", "D", "G", "S_synth", "S"))


def test_cifar100_spec_is_the_registry_one():
    assert pairs.CIFAR100_SPEC == _REGISTRY["cifar100"].spec


@pytest.mark.slow
def test_quick_command_writes_a_csv_and_a_table(tmp_path):
    cmd = [sys.executable, "-m", "mosaic.bench", "speed", "--quick", "--device", "cpu", "--threads", "1",
           "--batch-size", "16", "--kd-steps", "2", "--ngf", "8", "--ndf", "8",
           "--variants", "reference,library,library+bf16+cl", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "speed_default_quick_cpu.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == speed.CSV_COLUMNS
    assert [r["variant"] for r in rows] == ["reference", "library", "library+bf16+cl"]
    assert all(float(r["steps_per_s"]) > 0 and float(r["peak_mem_mb"]) > 100 for r in rows)
    assert float(rows[0]["ratio"]) == 1.0 and rows[0]["batch_size"] == "16"
    assert "| library+bf16+cl |" in (tmp_path / "speed_default_quick_cpu.md").read_text()


def test_ratio_baseline_is_the_fastest_stock_reference_and_libpool_gets_a_note():
    m, v = timing.Measurement, variants.parse_variant
    ms = [m(v("reference"), [4.0, 4.0]),
          m(v("reference+libpool"), [3.0, 3.0]),  # faster, but not the stock baseline
          m(v("library+bf16+cl"), [1.0, 1.5])]
    assert speed.baseline(ms).variant.name == "reference"
    rows = {r["variant"]: r for r in speed.speed_rows(ms, steps=2, warmup=1)}
    assert rows["library+bf16+cl"]["ratio"] == pytest.approx((4.0 + 4 / 1.5) / 2)
    assert rows["reference+libpool"]["ratio"] == pytest.approx(4 / 3)
    (note,) = speed.libpool_notes(ms)
    assert "library+bf16+cl" in note and f"{(3.0 + 2.0) / 2:.2f}x" in note
    assert speed.baseline(ms[1:]).variant.name == "reference+libpool"  # no stock reference: the libpool one
    assert speed.libpool_notes(ms[:1] + ms[2:]) == []


def test_reference_runs_stock_max_pool_layers_unless_asked_for_the_librarys():
    for library_pooling in (False, True):
        players, _, loop = two_paths(tiny_cfg(), library_pooling=library_pooling)
        for net in (loop.teacher, loop.student):
            kinds = {type(x) for x in net.modules()} & {MaxPool2x2, torch.nn.MaxPool2d}
            assert kinds == ({MaxPool2x2} if library_pooling else {torch.nn.MaxPool2d})
        assert any(isinstance(x, MaxPool2x2) for x in players.teacher.modules())  # the library's teacher is untouched


# ----------------------------------------------------------------------------- variants built by build_step

def built(name: str, cfg: RunConfig, steps: int = 0):
    """build_step of variant ``name`` from seed 0 on a random teacher and tiny_ood; ``steps`` steps run."""
    torch.manual_seed(0)
    teacher = freeze(get_classifier(cfg.teacher, SPEC))
    torch.manual_seed(0)
    step, players, source = variants.build_step(variants.parse_variant(name), cfg, teacher, tiny_ood(), "cpu")
    return step, players, source, [step() for _ in range(steps)]


def test_library_variants_step_through_mosaic_train_iterate(monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[-1])  # the step number
        return iterate(*args, **kwargs)

    iterate = train.iterate
    monkeypatch.setattr(train, "iterate", counting)
    *_, rows = built("library+bf16+cl", tiny_cfg(), steps=3)
    assert calls == [1, 2, 3] and [r["step"] for r in rows] == [1, 2, 3]
    calls.clear()
    *_, rows = built("reference", tiny_cfg(), steps=2)
    assert calls == [] and "step" not in rows[0]  # the reference is its own plain loop


def test_library_variant_raises_the_nan_guard_of_train():
    step, players, _, _ = built("library", tiny_cfg())
    with torch.no_grad():
        next(players.student.parameters()).fill_(float("nan"))
    with pytest.raises(train.NonFiniteLossError, match="at step 1"):
        step()


def test_reference_variant_differs_from_the_library_only_where_intended():
    cfg = tiny_cfg()
    lib_step, lib, _, _ = built("library", cfg)
    ref_step, ref, loop, _ = built("reference", cfg)
    for name in ("student", "generator", "discriminator"):  # the same init from the same seed
        a, b = getattr(lib, name).state_dict(), getattr(ref, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    torch.manual_seed(1)
    lib_out = lib_step()
    torch.manual_seed(1)
    ref_out = ref_step()
    for k in G_TERMS:  # the same z and networks: the same generator terms
        assert ref_out[k] == pytest.approx(lib_out[k], rel=1e-5, abs=1e-6), k
    for opt in ("opt_s", "opt_g", "opt_d"):  # both step the same cosine schedules
        assert getattr(lib, opt).param_groups[0]["lr"] == getattr(ref, opt).param_groups[0]["lr"] < \
            getattr(cfg, "lr_" + opt[-1])
    # what differs on purpose: an unfrozen teacher that gathers gradients, stock pooling, a DataLoader
    assert all(p.grad is None for p in lib.teacher.parameters())
    assert all(p.grad is not None for p in loop.teacher.parameters())
    assert not any(isinstance(x, MaxPool2x2) for x in loop.student.modules())
    assert isinstance(loop.loader, torch.utils.data.DataLoader)


def test_library_variant_without_ood_images_streams_the_configs_own_through_build_streams(monkeypatch):
    seen = []
    build_streams = build.build_streams
    monkeypatch.setattr(build, "build_streams", lambda *a: seen.append(a[0]) or build_streams(*a))
    cfg = RunConfig(dataset="digits", ood="digits", teacher="cnn_half", student="cnn_half", batch_size=16,
                    kd_steps=1, z_dim=16, ngf=8, ndf=8, patch_size=4, device="cpu")
    spec = get_dataset("digits", "test").spec
    step, *_ = variants.build_step(variants.parse_variant("library+cl"), cfg, freeze(get_classifier("cnn_half", spec)),
                                   None, "cpu")
    assert step()["step"] == 1
    assert [c.channels_last for c in seen] == [True]  # the variant's config, built once
