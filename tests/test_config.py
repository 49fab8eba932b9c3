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
