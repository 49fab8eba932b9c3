import pytest

from mosaic.config import METHODS, RunConfig


def test_defaults_are_valid_and_round_trip():
    cfg = RunConfig()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert "mosaickd" in str(cfg)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError) as e:
        RunConfig(method="mosaic")
    for m in METHODS:
        assert m in str(e.value)


def test_unknown_field_lists_valid_fields():
    with pytest.raises(ValueError, match="valid fields"):
        RunConfig.from_dict({"stepz": 3})


@pytest.mark.parametrize("field,value", [("steps", 0), ("lr_g", 0.0), ("w_adv", -1.0), ("batch_size", 0),
                                         ("discriminator", "pixel"), ("precision", "fp8"), ("device", "tpu")])
def test_bad_values_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        RunConfig(**{field: value})


def test_players_follow_method():
    assert RunConfig(method="mosaickd").uses_discriminator
    assert not RunConfig(method="mosaickd", discriminator="none").uses_discriminator
    assert RunConfig(method="datafree").uses_generator and not RunConfig(method="datafree").uses_ood
    assert RunConfig(method="kd_ood").uses_ood and not RunConfig(method="kd_ood").uses_generator


def test_yaml_lists_become_tuples():
    assert RunConfig(betas=[0.5, 0.99]).betas == (0.5, 0.99)


def test_from_namespace_picks_only_fields():
    cfg = RunConfig.from_namespace({"method": "kd_ood", "steps": 7, "plt": object(), "_": 1})
    assert cfg.method == "kd_ood" and cfg.steps == 7 and cfg.seed == RunConfig().seed


def test_same_results_ignores_neutral_fields_and_int_float_spelling():
    cfg = RunConfig(lr_s=0.1, w_local=1.0)
    neutral = {"out_dir": "elsewhere", "device": "cpu", "eval_every": 3, "ckpt_every": 7, "resume": False,
               "compile": True, "channels_last": True, "data_root": "d", "teacher_dir": "t", "download": True,
               "logger": "tensorboard"}
    assert set(neutral) == RunConfig.NEUTRAL
    assert cfg.same_results(cfg.replace(**neutral)) and cfg.same_results(cfg.replace(**neutral).to_dict())
    assert cfg.same_results({**cfg.to_dict(), "w_local": 1})  # an int in a saved dict is the same float
    assert RunConfig(w_local=1).w_local == 1.0 and isinstance(RunConfig(w_local=1).w_local, float)


def test_results_diff_names_each_differing_field_saved_first():
    cfg = RunConfig(steps=50)
    assert cfg.results_diff(RunConfig(steps=20, seed=3)) == {"steps": (20, 50), "seed": (3, 0)}
    assert not cfg.same_results(RunConfig(steps=20))
    saved = cfg.to_dict()
    del saved["t_kd"]  # a config saved before this field existed: its default applies
    assert cfg.same_results(saved)
    assert "<config>" in cfg.results_diff({**saved, "no_such_field": 1})  # unreadable: never the same


def test_numpy_scalars_are_accepted_as_python_numbers():
    import numpy as np

    cfg = RunConfig(steps=np.int64(7), seed=np.int32(3), lr_s=np.float32(0.5), w_local=np.int64(1),
                    betas=(np.float64(0.5), 0.9))
    assert (cfg.steps, cfg.seed, cfg.lr_s, cfg.w_local) == (7, 3, 0.5, 1.0)
    assert type(cfg.steps) is int and type(cfg.lr_s) is float and type(cfg.w_local) is float
    assert cfg.same_results(RunConfig(steps=7, seed=3, lr_s=0.5, betas=(0.5, 0.9)))
    with pytest.raises(ValueError, match="RunConfig.steps must be a whole number"):
        RunConfig(steps=np.float64(1.5))
    with pytest.raises(ValueError, match="RunConfig.resume must be True or False"):
        RunConfig(resume=np.bool_(True))  # numpy's bool is not a bool: say so rather than guess
