"""A segmentation teacher is trained, selected on val mIoU, cached and reloaded like a classifier; the
preflight checks names and files against the dataset's task."""
from pathlib import Path

import pytest
import torch

from mosaic import build
from mosaic.config import RunConfig
from mosaic.data import DatasetNotFoundError, get_dataset, registry
from mosaic.evaluate import evaluate
from mosaic.models import Segmenter
from mosaic.teacher import TeacherConfig, check_teacher_file, get_teacher


@pytest.fixture
def small_scenes(monkeypatch):
    """fmnist_scenes with 256 / 64 / 64 scenes, so a teacher trains in seconds."""
    monkeypatch.setitem(registry.SCENE_COUNTS, "train", 256)
    monkeypatch.setitem(registry.SCENE_COUNTS, "val", 64)
    monkeypatch.setitem(registry.SCENE_COUNTS, "test", 64)
    try:
        get_dataset("fmnist_scenes", "test")
    except DatasetNotFoundError:
        pytest.skip("needs Fashion-MNIST (data/FashionMNIST or apt-get install dataset-fashion-mnist)")


def test_segmentation_teacher_trains_on_val_miou_caches_and_reloads(small_scenes, tmp_path):
    cfg = TeacherConfig(dataset="fmnist_scenes", arch="segnet_small_half", epochs=2, batch_size=32, lr=0.05)
    with pytest.warns(UserWarning, match=r"val mIoU [\d.]+%"):  # 16 iterations: a weak teacher, said so in mIoU
        teacher, info = get_teacher(cfg, tmp_path, progress=False)
    assert isinstance(teacher, Segmenter) and teacher.frozen and not teacher.training
    assert {"val_miou", "test_miou"} <= set(info) and "val_acc" not in info and not info["cached"]
    assert len(info["val_curve"]) == 2 and max(info["val_curve"]) == pytest.approx(info["val_miou"], abs=0.006)
    test = get_dataset("fmnist_scenes", "test")
    assert evaluate(teacher, teacher, test)["teacher_miou"] == pytest.approx(info["test_miou"])
    file = next(tmp_path.glob("fmnist_scenes_segnet_small_half_e2_s0*.pt"))
    assert torch.load(file, weights_only=False)["task"] == "segmentation"
    again, info2 = get_teacher(cfg, tmp_path, progress=False)
    assert info2["cached"] and all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                                       teacher.state_dict().values()))
    check_teacher_file(file, {"task": "segmentation", "arch": "segnet_small_half", "num_classes": 11})
    with pytest.raises(ValueError, match="task is 'segmentation' in the file but 'classification' in this run"):
        check_teacher_file(file, {"task": "classification"})


def test_preflight_checks_models_against_the_task(tmp_path):
    dense = dict(dataset="fmnist_scenes", ood="scenes:mnist5k", teacher="segnet_small", student="segnet_small_half",
                 out_dir=str(tmp_path / "run"))
    build.preflight(RunConfig(**dense))  # names and task fit: no error, nothing built
    with pytest.raises(ValueError, match="student 'lenet5_half' is a classifier .* use one of the segmenters"):
        build.preflight(RunConfig(**{**dense, "student": "lenet5_half"}))
    with pytest.raises(ValueError, match="teacher 'segnet_small' is a segmenter .* classification task"):
        build.preflight(RunConfig(teacher="segnet_small", out_dir=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="use folder:PATH or scenes:NAME as ood, and one of .*fmnist_scenes"):
        build.preflight(RunConfig(**{**dense, "dataset": "scenes:mnist5k"}))
    with pytest.raises(ValueError, match="unknown teacher 'unet9'; valid names: .*deeplabv3_resnet50"):
        build.preflight(RunConfig(**{**dense, "teacher": "unet9"}))
    build.preflight(RunConfig(**{**dense, "balance_bg": "ood"}))  # mosaickd on scenes: its background
    with pytest.raises(ValueError, match="balance_bg='free' treats class 0 as a segmentation background, and fmnist"):
        build.preflight(RunConfig(balance_bg="free", out_dir=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="balance_bg='ood' reads the teacher on the real OOD images, which "
                                         "method='datafree' does not see"):
        RunConfig(**{**dense, "balance_bg": "ood", "method": "datafree"})
    with pytest.raises(ValueError, match="method='kd_ood' has no generator"):
        RunConfig(**{**dense, "balance_bg": "free", "method": "kd_ood"})


def test_the_nyuv2_parameter_file_is_a_valid_dense_run(tmp_path):
    import yaml

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "notebooks/params/nyuv2_deeplabv3_resnet50_mobilenet.yaml").read_text())
    cfg = RunConfig.from_dict({**params, "out_dir": str(tmp_path / "run"), "device": "cpu"})
    build.preflight(cfg)  # names, task, patch size: no data needed
    assert (cfg.dataset, cfg.teacher, cfg.student) == ("nyuv2", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large")


def test_a_teacher_module_of_the_other_task_is_refused():
    from mosaic.data import dataset_spec
    from mosaic.models import get_classifier, get_model

    spec = dataset_spec("fmnist_scenes")
    classifier_spec = type(spec)(spec.channels, spec.size, spec.mean, spec.std, spec.num_classes)  # same but per image
    cfg = RunConfig(dataset="fmnist_scenes", teacher="segnet_small", student="segnet_small_half")
    with pytest.raises(ValueError, match="pass a teacher of this dataset"):
        build.check_teacher_module(cfg, get_classifier("cnn_half", classifier_spec))
    build.check_teacher_module(cfg, get_model("segnet_small_half", spec))
