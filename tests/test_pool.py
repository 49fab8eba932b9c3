"""The student's replay memory of synthetic images (mosaic.pool, RunConfig.pool)."""
import pytest
import torch

from mosaic import game
from mosaic.config import RunConfig
from mosaic.pool import SamplePool


def batch(start: int, n: int) -> torch.Tensor:
    """n 1x2x2 images whose pixels all hold their index start, start+1, ..."""
    return torch.arange(start, start + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()


def test_the_pool_keeps_the_last_capacity_images_in_a_ring():
    pool = SamplePool(5)
    pool.push(batch(0, 3))
    assert len(pool) == 3 and sorted(pool.images[:3, 0, 0, 0].tolist()) == [0, 1, 2]
    pool.push(batch(3, 4))  # 7 pushed: 0 and 1 are overwritten
    assert len(pool) == 5 and sorted(pool.images[:, 0, 0, 0].tolist()) == [2, 3, 4, 5, 6]
    pool.push(batch(10, 8))  # larger than the pool: its last 5 stay
    assert sorted(pool.images[:, 0, 0, 0].tolist()) == [13, 14, 15, 16, 17]


def test_sampling_draws_only_stored_images_with_the_global_rng():
    pool = SamplePool(8)
    pool.push(batch(0, 3))
    torch.manual_seed(0)
    a = pool.sample(64)
    torch.manual_seed(0)
    b = pool.sample(64)
    assert torch.equal(a, b) and a.shape == (64, 1, 2, 2)
    assert set(a[:, 0, 0, 0].tolist()) == {0.0, 1.0, 2.0}  # never an empty slot; 64 draws reach all 3
    with pytest.raises(RuntimeError, match="empty pool"):
        SamplePool(2).sample(1)


def test_a_saved_pool_loads_into_the_same_state():
    pool = SamplePool(6)
    pool.push(batch(0, 4))
    pool.push(batch(4, 4))
    copy = SamplePool(6)
    copy.load_state_dict(pool.state_dict())
    assert (copy.size, copy.head) == (pool.size, pool.head) and torch.equal(copy.images, pool.images)
    copy.push(batch(8, 1))
    pool.push(batch(8, 1))
    assert torch.equal(copy.images, pool.images)
    with pytest.raises(ValueError, match="capacity"):
        SamplePool(3).load_state_dict(pool.state_dict())


def test_the_student_trains_on_pool_draws_that_include_the_fresh_batch(monkeypatch):
    players = game.Players(teacher=None, student=None, opt_s=None, pool=SamplePool(4))
    cfg = RunConfig(method="datafree", batch_size=2, pool=4)
    fresh = iter([batch(0, 2), batch(2, 2), batch(4, 2)])
    monkeypatch.setattr(game, "_synthesize", lambda *a: next(fresh))
    seen = [game._student_synthetic(players, cfg, "cpu", game.Shard()) for _ in range(3)]
    assert all(x.shape == (2, 1, 2, 2) for x in seen)
    assert set(seen[0][:, 0, 0, 0].tolist()) <= {0, 1}  # the first draw can only see the first batch
    assert sorted(players.pool.images[:, 0, 0, 0].tolist()) == [2, 3, 4, 5]
    players.pool = None  # no pool: the fresh batch itself
    fresh = iter([batch(7, 2)])
    assert torch.equal(game._student_synthetic(players, cfg, "cpu", game.Shard()), batch(7, 2))


def test_a_pool_needs_a_generator():
    with pytest.raises(ValueError, match="no generator"):
        RunConfig(method="kd_ood", pool=100)
    with pytest.raises(ValueError, match="pool"):
        RunConfig(pool=-1)
