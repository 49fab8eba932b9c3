"""mosaic.nnutil: eval_mode sets eval inside and restores every submodule's own mode, also on errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mosaic.nnutil import eval_mode


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.Dropout(), nn.ReLU()))


def _modes(m: nn.Module) -> list[bool]:
    return [s.training for s in m.modules()]


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_sets_eval_inside_and_restores_the_mode(training: bool) -> None:
    net = _net().train(training)
    with eval_mode(net) as inside:
        assert inside is net and not any(_modes(net))
    assert _modes(net) == [training] * len(_modes(net))


def test_eval_mode_restores_mixed_modes_per_submodule() -> None:
    net = _net().train()
    net[1].eval()  # e.g. a frozen BatchNorm inside a training network
    before = _modes(net)
    with eval_mode(net):
        pass
    assert _modes(net) == before and not net[1].training and net[0].training


def test_eval_mode_restores_the_mode_on_an_exception() -> None:
    net = _net().train()
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(net):
            assert not net.training
            raise RuntimeError("boom")
    assert all(_modes(net))


def test_cosine_schedule_is_the_closed_form_cosine_bit_for_bit():
    import math

    from mosaic.nnutil import cosine_schedule

    for total in (7, 200):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = cosine_schedule(opt, total)
        seen = []
        for _ in range(total + 2):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert seen == [0.1 * (0.5 * (1 + math.cos(math.pi * min(i, total) / total))) for i in range(total + 2)]


def test_cosine_schedule_with_a_linear_warmup():
    import math

    from mosaic.nnutil import cosine_schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_schedule(opt, 10, warmup=4)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [min(1.0, (i + 1) / 4) * 0.5 * (1 + math.cos(math.pi * i / 10)) for i in range(10)]
    assert seen == pytest.approx(expected, rel=1e-12, abs=0) and seen[0] == 0.25 and seen[3] < seen[2] + 0.5
