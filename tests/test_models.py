"""Tests for mosaic.models: shapes, parameter counts, normalisation, receptive fields."""
from __future__ import annotations

from functools import cache

import pytest
import torch
from torch import nn

from mosaic.models import (
    CLASSIFIERS,
    DISCRIMINATORS,
    Classifier,
    FullImageDiscriminator,
    Generator,
    PatchDiscriminator,
    count_parameters,
    describe,
    get_classifier,
    get_discriminator,
    reachable_patch_sizes,
    receptive_field,
)
from mosaic.spec import ImageSpec

MNIST = ImageSpec(1, 28, (0.1307,), (0.3081,), 10)
CIFAR100 = ImageSpec(3, 32, (0.507, 0.487, 0.441), (0.267, 0.256, 0.276), 100)


def spec_of(channels: int, size: int, num_classes: int = 10) -> ImageSpec:
    return ImageSpec(channels, size, (0.5,) * channels, (0.25,) * channels, num_classes)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@cache
def built(name: str, spec: ImageSpec) -> Classifier:
    """Each (name, spec) is built once (big nets take a while); eval mode, never mutated."""
    return get_classifier(name, spec).eval()


# ---------------------------------------------------------------------------------- classifiers


@pytest.mark.parametrize("spec", [MNIST, CIFAR100], ids=["1x28-10", "3x32-100"])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_shapes_and_head(name: str, spec: ImageSpec) -> None:
    model = built(name, spec)
    x = torch.rand(2, spec.channels, spec.size, spec.size)
    with torch.no_grad():
        logits, features = model(x), model.forward_features(x)
    assert isinstance(model, Classifier) and model.name == name
    assert logits.shape == (2, spec.num_classes)
    assert features.shape == (2, model.feature_dim)
    # logits are the linear head applied to the penultimate features
    torch.testing.assert_close(logits, model.head(features))


@pytest.mark.parametrize("size", [8, 96])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_small_and_large_inputs(name: str, size: int) -> None:
    model = get_classifier(name, spec_of(3, size)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, size, size)).shape == (2, 10)


# Reference parameter counts, derived layer by layer with the formulas below
# (conv: c_in·c_out·k² (+ c_out bias); BN: 2·c; linear: d_in·d_out + d_out).
def conv(c_in: int, c_out: int, k: int, bias: bool = False) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def linear(d_in: int, d_out: int) -> int:
    return d_in * d_out + d_out


def resnet_count(blocks: tuple[int, ...], c: int, k: int) -> int:
    total, c_in = conv(c, 64, 3) + bn(64), 64  # stem
    for width, n in zip((64, 128, 256, 512), blocks):
        for b in range(n):
            src = c_in if b == 0 else width
            total += conv(src, width, 3) + bn(width) + conv(width, width, 3) + bn(width)
            if src != width:  # projection shortcut
                total += conv(src, width, 1) + bn(width)
        c_in = width
    return total + linear(512, k)


def wrn_count(depth: int, widen: int, c: int, k: int) -> int:
    n, total, c_in = (depth - 4) // 6, conv(c, 16, 3), 16
    for width in (16 * widen, 32 * widen, 64 * widen):
        for b in range(n):
            src = c_in if b == 0 else width
            total += bn(src) + conv(src, width, 3) + bn(width) + conv(width, width, 3)
            if src != width:
                total += conv(src, width, 1)
        c_in = width
    return total + bn(c_in) + linear(c_in, k)


def vgg11_count(c: int, k: int) -> int:
    widths = (c, 64, 128, 256, 256, 512, 512, 512, 512)
    convs = sum(conv(a, b, 3, bias=True) + bn(b) for a, b in zip(widths, widths[1:]))
    return convs + linear(512, k)


def lenet_count(c: int, k: int, w: tuple[int, int, int, int]) -> int:
    return (conv(c, w[0], 5, True) + conv(w[0], w[1], 5, True) + conv(w[1], w[2], 5, True)
            + linear(w[2], w[3]) + linear(w[3], k))


def cnn_count(c: int, k: int, w: tuple[int, int, int]) -> int:
    convs = conv(c, w[0], 3) + conv(w[0], w[1], 3) + conv(w[1], w[2], 3)
    return convs + bn(sum(w)) + linear(w[2], k)


REFERENCE_COUNTS = {  # (channels, classes) -> count, for every classifier
    "lenet5": lambda c, k: lenet_count(c, k, (6, 16, 120, 84)),
    "lenet5_half": lambda c, k: lenet_count(c, k, (3, 8, 60, 42)),
    "cnn": lambda c, k: cnn_count(c, k, (32, 64, 128)),
    "cnn_half": lambda c, k: cnn_count(c, k, (16, 32, 64)),
    "resnet18": lambda c, k: resnet_count((2, 2, 2, 2), c, k),
    "resnet34": lambda c, k: resnet_count((3, 4, 6, 3), c, k),
    "wrn16_1": lambda c, k: wrn_count(16, 1, c, k),
    "wrn16_2": lambda c, k: wrn_count(16, 2, c, k),
    "wrn40_1": lambda c, k: wrn_count(40, 1, c, k),
    "wrn40_2": lambda c, k: wrn_count(40, 2, c, k),
    "vgg11_bn": vgg11_count,
}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_parameter_counts_match_layer_by_layer_reference(name: str) -> None:
    for spec in (MNIST, CIFAR100):
        expected = REFERENCE_COUNTS[name](spec.channels, spec.num_classes)
        assert count_parameters(built(name, spec)) == expected


@pytest.mark.parametrize(
    "name, spec, published",
    [  # exact, from the formulas above: 11,220,132 / 21,328,292 / 2,255,156 / 180,916 / 61,706
        ("resnet18", CIFAR100, 11.2e6),  # CIFAR ResNet-18, 100 classes
        ("resnet34", CIFAR100, 21.3e6),
        ("wrn40_2", CIFAR100, 2.2e6),  # WRN paper / KD papers: 2.2M
        ("wrn16_1", CIFAR100, 0.18e6),
        ("lenet5", ImageSpec(1, 32, (0.5,), (0.5,), 10), 62e3),  # DAFL's LeNet-5 on 32x32 MNIST
    ],
)
def test_parameter_counts_match_published_sizes(
    name: str, spec: ImageSpec, published: float
) -> None:
    assert count_parameters(built(name, spec)) == pytest.approx(published, rel=0.03)


def test_forward_normalises_with_the_spec() -> None:
    spec = ImageSpec(3, 16, (0.2, 0.4, 0.6), (0.1, 0.2, 0.3), 5)
    model = get_classifier("cnn", spec).eval()
    x = torch.rand(2, 3, 16, 16)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        reference_features = model.features((x - mean) / std)
        torch.testing.assert_close(model.forward_features(x), reference_features)
        torch.testing.assert_close(model(x), model.head(reference_features))
        # and normalisation matters: skipping it gives different logits
        assert not torch.allclose(model(x), model.head(model.features(x)), atol=1e-3)


def test_state_dict_holds_weights_only_and_round_trips() -> None:
    model = get_classifier("cnn_half", CIFAR100).eval()
    copy = get_classifier("cnn_half", CIFAR100).eval()
    state = model.state_dict()
    assert "mean" not in state and "std" not in state
    copy.load_state_dict(state)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x))


def test_wrong_channel_count_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        get_classifier("cnn", CIFAR100)(torch.rand(2, 1, 32, 32))


def test_unknown_classifier_lists_valid_names() -> None:
    with pytest.raises(ValueError) as error:
        get_classifier("resnet1000", CIFAR100)
    assert "resnet1000" in str(error.value)
    assert all(name in str(error.value) for name in CLASSIFIERS)


@pytest.mark.parametrize("num_classes", [0, 1])
def test_classifier_needs_two_classes(num_classes: int) -> None:
    with pytest.raises(ValueError, match="num_classes >= 2"):
        get_classifier("lenet5", spec_of(1, 28, num_classes))


def test_describe_is_one_line_with_name_and_count() -> None:
    expected = "wrn40_2 (3x32x32, 100 classes): 2,255,156 parameters"
    assert describe(built("wrn40_2", CIFAR100)) == expected
    assert describe(nn.Linear(3, 2)) == "Linear: 8 parameters"


# ------------------------------------------------------------------------------------ generator


def generator_count(z: int, g: int, s: int, c: int) -> int:
    """Linear -> BN -> conv3x3 (2g -> 2g) -> BN -> conv3x3 (2g -> g) -> BN -> conv3x3 (g -> c)."""
    return (linear(z, 2 * g * (s // 4) ** 2) + bn(2 * g) + conv(2 * g, 2 * g, 3) + bn(2 * g)
            + conv(2 * g, g, 3) + bn(g) + conv(g, c, 3, bias=True))


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32), (3, 8)])
def test_generator_shape_and_range(channels: int, size: int) -> None:
    generator = Generator(spec_of(channels, size), z_dim=20, ngf=16)
    images = generator(torch.randn(2, 20))
    assert images.shape == (2, channels, size, size)
    assert images.min() >= 0 and images.max() <= 1
    assert images.std() > 0.01  # not a constant image
    assert count_parameters(generator) == generator_count(20, 16, size, channels)


@pytest.mark.parametrize("shift, target", [(-30.0, 0.0), (30.0, 1.0)])
def test_generator_output_saturates_inside_unit_range(shift: float, target: float) -> None:
    generator = Generator(spec_of(3, 8), z_dim=20, ngf=8)
    last_conv = [m for m in generator.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.bias.fill_(shift)  # push the pre-activation far outside [0, 1]
        images = generator(torch.randn(2, 20))
    assert images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images, torch.full_like(images, target), atol=1e-3, rtol=0)


def test_generator_paper_size() -> None:
    generator = Generator(spec_of(3, 32), z_dim=100, ngf=128)
    assert count_parameters(generator) == generator_count(100, 128, 32, 3) == 2_544_259


def test_generator_rejects_sizes_not_multiple_of_four() -> None:
    with pytest.raises(ValueError, match=r"multiple of 4.*got 30"):
        Generator(spec_of(3, 30))


def test_generator_rejects_wrong_z() -> None:
    with pytest.raises(ValueError, match=r"\(B, 100\)"):
        Generator(spec_of(3, 32))(torch.randn(2, 64))


# ------------------------------------------------------------------------------- discriminators


def test_receptive_field_reference_values() -> None:
    assert receptive_field([]) == (1, 1)
    assert receptive_field([(4, 2), (4, 2), (1, 1)]) == (10, 4)  # MosaicKD's PatchGAN
    assert receptive_field([(3, 1)] * 3) == (7, 1)  # three 3x3 convs see 7x7 (VGG paper)
    assert receptive_field([(11, 4), (3, 2)]) == (19, 8)  # AlexNet conv1 + max-pool


def measure_window(
    net: nn.Module, channels: int, size: int, i: int, j: int
) -> tuple[int, int, int, int]:
    """Backprop from logit (i, j) to the input -> (first row, first col, #rows, #cols) that get
    a nonzero gradient."""
    net = net.double().eval()  # eval: BN is a fixed affine map and mixes no pixels across the batch
    x = torch.rand(1, channels, size, size, dtype=torch.float64, requires_grad=True)
    net(x)[0, 0, i, j].backward()
    touched = x.grad.abs().sum(dim=(0, 1)) > 0  # (H, W)
    rows = touched.any(dim=1).nonzero().flatten()
    cols = touched.any(dim=0).nonzero().flatten()
    assert len(rows) == rows[-1] - rows[0] + 1 and len(cols) == cols[-1] - cols[0] + 1  # contiguous
    return int(rows[0]), int(cols[0]), len(rows), len(cols)


def test_patch_discriminator_default_is_the_papers() -> None:
    discriminator = PatchDiscriminator(3)
    assert discriminator.layer_spec == ((4, 2), (4, 2), (1, 1))
    assert (discriminator.receptive_field, discriminator.stride) == (10, 4)
    assert discriminator(torch.rand(2, 3, 32, 32)).shape == (2, 1, 8, 8)
    assert discriminator(torch.rand(2, 3, 28, 28)).shape == (2, 1, 7, 7)


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("patch_size", [4, 8, 10, 18, 22, 26])
def test_patch_receptive_field_is_measured_true(patch_size: int, size: int) -> None:
    discriminator = PatchDiscriminator(1, patch_size, ndf=4)
    assert discriminator.receptive_field == patch_size
    h = discriminator.output_size(size)
    assert discriminator(torch.rand(2, 1, size, size)).shape == (2, 1, h, h)
    assert h == size // discriminator.stride
    centre = h // 2
    row, col, n_rows, n_cols = measure_window(discriminator, 1, size, centre, centre)
    assert (n_rows, n_cols) == (patch_size, patch_size)
    assert 0 < row and row + n_rows < size  # the window is not clipped by the border
    next_row, next_col, _, _ = measure_window(discriminator, 1, size, centre + 1, centre + 1)
    assert (next_row - row, next_col - col) == (discriminator.stride, discriminator.stride)


@pytest.mark.parametrize(
    "patch_size, map_28, map_32", [(4, 14, 16), (10, 7, 8), (16, 14, 16), (22, 3, 4), (46, 1, 2)]
)
def test_patch_output_map_sizes(patch_size: int, map_28: int, map_32: int) -> None:
    discriminator = PatchDiscriminator(3, patch_size, ndf=4)
    assert (discriminator.output_size(28), discriminator.output_size(32)) == (map_28, map_32)
    assert discriminator(torch.rand(2, 3, 28, 28)).shape == (2, 1, map_28, map_28)
    assert discriminator(torch.rand(2, 3, 32, 32)).shape == (2, 1, map_32, map_32)


def test_reachable_patch_sizes_match_brute_force() -> None:
    brute = {
        receptive_field([(4, 2)] * n + [(3, 1)] * m + [(1, 1)])[0]
        for n in range(1, 7)
        for m in range(40)
    }
    assert reachable_patch_sizes(64) == sorted(p for p in brute if p <= 64)
    assert reachable_patch_sizes(24) == [4, 8, 10, 12, 16, 18, 20, 22, 24]
    for p in reachable_patch_sizes(64):
        assert PatchDiscriminator(3, p, ndf=2).receptive_field == p


def test_patch_batchnorm_after_all_convs_but_first_and_last() -> None:
    discriminator = PatchDiscriminator(3, 26, ndf=4)  # 2 stride-2 convs, 2 3x3 convs, 1x1
    modules = list(discriminator.net)
    convs = [k for k, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    with_bn = [
        k for k in convs if k + 1 < len(modules) and isinstance(modules[k + 1], nn.BatchNorm2d)
    ]
    assert with_bn == convs[1:-1]


@pytest.mark.parametrize("patch_size", [3, 6, 14, 30, 62])
def test_unreachable_patch_size_lists_reachable(patch_size: int) -> None:
    with pytest.raises(ValueError) as error:
        PatchDiscriminator(3, patch_size)
    assert f"patch_size {patch_size}" in str(error.value)
    assert str(reachable_patch_sizes(64)) in str(error.value)


@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32), (3, 96)])
def test_full_image_discriminator_sees_whole_image(channels: int, size: int) -> None:
    discriminator = FullImageDiscriminator(spec_of(channels, size), ndf=4)
    assert discriminator(torch.rand(2, channels, size, size)).shape == (2, 1, 1, 1)
    assert discriminator.receptive_field >= size
    assert receptive_field(discriminator.layer_spec)[0] == discriminator.receptive_field
    assert measure_window(discriminator, channels, size, 0, 0) == (0, 0, size, size)


def test_get_discriminator_kinds() -> None:
    patch = get_discriminator("patch", CIFAR100, patch_size=18, ndf=8)
    assert isinstance(patch, PatchDiscriminator) and patch.receptive_field == 18
    assert isinstance(get_discriminator("full", CIFAR100, ndf=8), FullImageDiscriminator)
    assert get_discriminator("none", CIFAR100) is None
    with pytest.raises(ValueError) as error:
        get_discriminator("global", CIFAR100)
    assert all(kind in str(error.value) for kind in DISCRIMINATORS)
    with pytest.raises(ValueError, match="no logit map"):
        get_discriminator("patch", spec_of(3, 8), patch_size=46)  # stride 16 > 8 pixels


@pytest.mark.parametrize("kind, patch_size", [("patch", 10), ("patch", 18), ("full", 10)])
def test_spectral_discriminator_has_unit_norm_convs_and_the_same_window(kind: str, patch_size: int) -> None:
    """norm="spectral": no BatchNorm, every conv's weight (out, in·k·k) has largest singular value 1 after a few
    training forwards (power iteration), and the logit map sees the same window as the BatchNorm one."""
    torch.manual_seed(0)
    sn = get_discriminator(kind, spec_of(1, 28), patch_size=patch_size, ndf=8, norm="spectral")
    bn = get_discriminator(kind, spec_of(1, 28), patch_size=patch_size, ndf=8)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in sn.modules())
    assert (sn.layer_spec, sn.receptive_field, sn.stride) == (bn.layer_spec, bn.receptive_field, bn.stride)
    x = torch.rand(4, 1, 28, 28)
    for _ in range(30):
        out = sn(x)
    assert out.shape == bn(x).shape
    convs = [m for m in sn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(bn.layer_spec)
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.out_channels, -1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-2)  # power iteration: one step per forward
    # its power-iteration vectors are state: a copy loaded from the state dict gives the same logits
    twin = get_discriminator(kind, spec_of(1, 28), patch_size=patch_size, ndf=8, norm="spectral")
    twin.load_state_dict(sn.state_dict())
    assert torch.equal(twin.eval()(x), sn.eval()(x))
    with pytest.raises(ValueError, match="unknown discriminator norm 'layer'; valid: batch, spectral"):
        get_discriminator(kind, spec_of(1, 28), norm="layer")


# ----------------------------------------------------------------------------- 2x2 max-pool


@pytest.mark.parametrize("shape", [(4, 6, 28, 28), (2, 3, 7, 9), (3, 5, 13, 14), (2, 1, 2, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool2x2_no_grad_path_equals_max_pool2d(shape, dtype, channels_last) -> None:
    from mosaic.models.pool import max_pool2x2

    x = torch.randint(-3, 4, shape).to(dtype)  # small integers: many ties
    x[0, 0, 0, 0] = float("nan")  # NaN propagates like max_pool2d's
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast = max_pool2x2(x)
    ref = torch.nn.functional.max_pool2d(x, 2)
    assert fast.shape == ref.shape and fast.dtype == ref.dtype
    assert torch.equal(fast.nan_to_num(99.0), ref.nan_to_num(99.0))
    assert fast[0, 0, 0, 0].isnan()


def test_max_pool2x2_gradients_are_max_pool2ds() -> None:
    from mosaic.models.pool import max_pool2x2

    x = torch.randint(-3, 4, (2, 4, 10, 10)).float()  # ties: PyTorch's tie-breaking must be kept
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(2, 4, 5, 5)
    max_pool2x2(a).backward(g)
    torch.nn.functional.max_pool2d(b, 2).backward(g)
    assert torch.equal(a.grad, b.grad)


def test_lenet_and_cnn_give_the_same_logits_with_either_pool_path() -> None:
    from mosaic.models import pool

    x = torch.rand(8, 1, 28, 28)
    for name in ("lenet5", "lenet5_half", "cnn"):
        torch.manual_seed(0)
        net = get_classifier(name, MNIST).eval()
        assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
        with torch.no_grad():
            fast = net(x)
            with pool.fast_path(False):
                native = net(x)
        assert torch.equal(fast, native), name


def test_fast_path_switches_the_no_grad_path_in_its_block_only(monkeypatch) -> None:
    import threading

    from mosaic.models import pool

    calls = []
    native = torch.nn.functional.max_pool2d
    monkeypatch.setattr(pool.F, "max_pool2d", lambda x, k: calls.append(threading.get_ident()) or native(x, k))
    x = torch.rand(1, 2, 6, 6)
    with torch.no_grad():
        pool.max_pool2x2(x)
        assert calls == []  # default: the strided-view maximum
        with pool.fast_path(False):
            pool.max_pool2x2(x)
            with pool.fast_path(True):  # nests
                pool.max_pool2x2(x)
            other = threading.Thread(target=pool.max_pool2x2, args=(x,))  # another thread keeps the default
            other.start()
            other.join()
            pool.max_pool2x2(x)
        assert calls == [threading.get_ident()] * 2
        with pytest.raises(RuntimeError), pool.fast_path(False):
            raise RuntimeError
        pool.max_pool2x2(x)
    assert len(calls) == 2  # restored after the exception


def test_pool_then_relu_equals_relu_then_pool_values_and_gradients() -> None:
    from mosaic.models.pool import MaxPool2x2

    x = torch.randint(-3, 4, (4, 3, 12, 12)).float()  # ties, zeros and all-negative windows
    g = torch.randn(4, 3, 6, 6)
    ours, usual = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours = nn.Sequential(MaxPool2x2(), nn.ReLU())(ours)
    y_usual = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))(usual)
    y_ours.backward(g)
    y_usual.backward(g)
    assert torch.equal(y_ours, y_usual) and torch.equal(ours.grad, usual.grad)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_half"])
def test_lenet_matches_the_usual_relu_then_pool_layout(name: str) -> None:
    torch.manual_seed(0)
    net = get_classifier(name, MNIST)
    usual = get_classifier(name, MNIST)
    layers = list(usual.features)
    for i in (1, 4):  # the usual order: conv -> ReLU -> max-pool
        layers[i], layers[i + 1] = nn.ReLU(), nn.MaxPool2d(2)
    usual.features = nn.Sequential(*layers)
    usual.load_state_dict(net.state_dict())  # same keys: the layout change moves no weights
    x = torch.rand(16, 1, 28, 28)
    net(x).square().sum().backward()
    usual(x).square().sum().backward()
    assert torch.equal(net(x), usual(x))
    for (k, a), b in zip(net.named_parameters(), usual.parameters()):
        assert torch.equal(a.grad, b.grad), k
