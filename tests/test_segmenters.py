"""Segmenters by name: logits (B, K, H, W), normalisation, grey input for torchvision's 3-channel nets,
freezing, and the registry's task check."""
import pytest
import torch

from mosaic.models import MODELS, SEGMENTERS, Segmenter, count_parameters, get_model, get_segmenter
from mosaic.spec import ImageSpec

GREY = ImageSpec(1, 64, (0.13,), (0.28,), 11, task="segmentation")
RGB = ImageSpec(3, 32, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), 5, task="segmentation")


@pytest.mark.parametrize("name", ["segnet_small", "segnet_small_half"])
@pytest.mark.parametrize("spec", [GREY, RGB, ImageSpec(1, 30, (0.5,), (0.5,), 3, task="segmentation")])
def test_small_pair_gives_per_pixel_logits(name, spec):
    model = get_segmenter(name, spec)
    x = torch.rand(2, spec.channels, spec.size, spec.size, requires_grad=True)
    out = model(x)
    assert isinstance(model, Segmenter) and out.shape == (2, spec.num_classes, spec.size, spec.size)
    out[:, 0, 3, 4].sum().backward()  # a pixel's logit depends on the input and on the weights
    assert x.grad.abs().sum() > 0 and model.net.enc1[0].weight.grad.abs().sum() > 0


def test_small_student_is_about_a_quarter_of_the_teacher_and_state_dicts_hold_weights_only():
    teacher, student = get_segmenter("segnet_small", GREY), get_segmenter("segnet_small_half", GREY)
    assert 0.2 < count_parameters(student) / count_parameters(teacher) < 0.3
    assert not any(k.endswith(("mean", "std")) and "net" not in k for k in teacher.state_dict())


def test_segmenter_normalises_with_its_spec():
    model = get_segmenter("segnet_small_half", GREY).eval()
    x = torch.rand(1, 1, 64, 64)
    inside = {}
    model.net.register_forward_hook(lambda m, args, out: inside.update(x=args[0]))
    model(x)
    torch.testing.assert_close(inside["x"], (x - 0.13) / 0.28)
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 1, H, W\)"):
        model(torch.rand(1, 3, 64, 64))


def test_frozen_segmenter_stays_in_eval_mode_without_gradients():
    model = get_segmenter("segnet_small_half", GREY).freeze()
    torch.nn.Sequential(model).train()
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_get_model_checks_the_task():
    assert set(SEGMENTERS) <= set(MODELS) and "lenet5" in MODELS
    with pytest.raises(ValueError, match="'lenet5' is a classifier .* segmentation task; use one of the segmenters"):
        get_model("lenet5", GREY)
    with pytest.raises(ValueError, match="'segnet_small' is a segmenter .* classification task"):
        get_model("segnet_small", ImageSpec(1, 28, (0.5,), (0.5,), 10))
    with pytest.raises(ValueError, match="unknown model 'unet9'; valid names: .*segnet_small"):
        get_model("unet9", GREY)
    assert get_model("segnet_small", GREY).name == "segnet_small"


@pytest.mark.parametrize("name", [
    "lraspp_mobilenet_v3_large",
    "deeplabv3_mobilenet_v3_large",
    pytest.param("deeplabv3_resnet50", marks=pytest.mark.slow),
    pytest.param("fcn_resnet50", marks=pytest.mark.slow),
])
def test_torchvision_segmenters_unwrap_out_and_see_grey_as_three_equal_channels(name):
    model = get_model(name, GREY).eval()  # eval: DeepLab's image-pooling BatchNorm needs a batch > 1 in train mode
    seen = {}
    model.net.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    with torch.no_grad():
        out = model(torch.rand(1, 1, 64, 64))
    assert out.shape == (1, 11, 64, 64) and isinstance(seen["out"], dict)
    assert torch.equal(out, seen["out"]["out"])
    x = seen["x"]  # what the torchvision network got: (1, 3, 64, 64), one normalised grey image thrice
    assert x.shape == (1, 3, 64, 64) and torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
