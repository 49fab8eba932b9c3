"""mosaic.patches against brute-force references: grids, shuffles, windows, scores, nearest patches."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mosaic import patches as P
from mosaic.models import FullImageDiscriminator, PatchDiscriminator, get_classifier
from mosaic.spec import ImageSpec

GREY28 = ImageSpec(1, 28, (0.5,), (0.25,), 10)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- grids

@pytest.mark.parametrize("size, patch, stride, cover, expected", [
    (28, 10, None, False, [0, 10]),
    (28, 10, None, True, [0, 10, 18]),
    (28, 7, None, True, [0, 7, 14, 21]),
    (28, 10, 4, False, [0, 4, 8, 12, 16]),
    (28, 10, 4, True, [0, 4, 8, 12, 16, 18]),
    (8, 8, None, True, [0]),
])
def test_grid_starts_by_hand(size, patch, stride, cover, expected):
    assert P.grid_starts(size, patch, stride, cover) == expected


def test_grid_starts_rejects_a_patch_larger_than_the_image():
    with pytest.raises(ValueError, match="between 1 and the image size"):
        P.grid_starts(8, 9)


def test_centered_starts_by_hand():
    assert P.centered_starts(28, 10) == [4, 14]  # 8 spare pixels, 4 on each side
    assert P.centered_starts(28, 7) == [0, 7, 14, 21]
    assert P.centered_starts(32, 10) == [1, 11, 21]


def test_extract_patches_matches_loops():
    x = torch.rand(2, 3, 12, 12)
    starts = [0, 3, 7]
    got = P.extract_patches(x, 5, starts)
    assert got.shape == (2, 9, 3, 5, 5)
    k = 0
    for top in starts:
        for left in starts:
            assert torch.equal(got[:, k], x[:, :, top:top + 5, left:left + 5])
            k += 1


@pytest.mark.parametrize("size, patch", [(28, 10), (28, 7), (28, 4), (12, 5), (9, 9)])
def test_reassembling_an_image_from_its_own_patches_is_exact(size, patch):
    x = torch.rand(3, 2, size, size)
    assert torch.equal(P.reassemble(P.extract_patches(x, patch), size), x)


def test_reassemble_averages_overlaps_and_fills_gaps_from_the_background():
    patches = torch.rand(1, 4, 1, 3, 3)
    background = torch.full((1, 1, 7, 7), -1.0)
    starts = [0, 2]  # overlaps at row/col 2; rows/cols 5, 6 uncovered
    got = P.reassemble(patches, 7, starts, background)
    total, count = torch.zeros(7, 7), torch.zeros(7, 7)
    for k, (t, s) in enumerate((t, s) for t in starts for s in starts):
        total[t:t + 3, s:s + 3] += patches[0, k, 0]
        count[t:t + 3, s:s + 3] += 1
    ref = torch.where(count > 0, total / count.clamp(min=1), torch.tensor(-1.0))
    torch.testing.assert_close(got[0, 0], ref)


def test_reassemble_rejects_a_patch_count_that_does_not_fit_the_grid():
    with pytest.raises(ValueError, match="do not fit"):
        P.reassemble(torch.rand(1, 5, 1, 3, 3), 6)


def _old_extract_patches(x, patch, starts):
    """patches.extract_patches before Tensor.unfold (the reference)."""
    crops = [x[:, :, top:top + patch, left:left + patch] for top in starts for left in starts]  # L x (B, C, p, p)
    return torch.stack(crops, dim=1)  # (B, L, C, p, p)


def _old_reassemble(patches, size, starts, background=None):
    """patches.reassemble before F.fold (the reference)."""
    b, n, c, p, _ = patches.shape
    total = patches.new_zeros(b, c, size, size)
    count = patches.new_zeros(1, 1, size, size)
    for k, (top, left) in enumerate((t, s) for t in starts for s in starts):
        total[:, :, top:top + p, left:left + p] += patches[:, k]
        count[:, :, top:top + p, left:left + p] += 1
    out = total / count.clamp(min=1)
    if background is not None:
        out = torch.where(count > 0, out, background.to(out.dtype))
    return out


GRIDS = [  # (size, patch, starts, placed by fold): the grids of shuffle_patches, attribute and patch_bank
    (28, 7, P.grid_starts(28, 7, cover=True), True),  # even, no overlap
    (28, 10, P.centered_starts(28, 10), True),  # shuffle_patches: offset, border strips from the background
    (32, 10, P.centered_starts(32, 10), True),
    (28, 6, [1, 8, 15], True),  # gaps between cells
    (28, 10, P.grid_starts(28, 10, cover=True), False),  # attribute: uneven, last row/column overlaps
    (12, 5, P.grid_starts(12, 5, stride=3, cover=True), False),  # patch_bank: overlapping and uneven
    (28, 10, P.grid_starts(28, 10, stride=4), False),  # even but overlapping: up to 3x3 patches per pixel
    (9, 9, [0], True),
]


@pytest.mark.parametrize("size, patch, starts, fold", GRIDS)
def test_extract_and_reassemble_equal_the_old_loops(size, patch, starts, fold):
    x = torch.rand(3, 2, size, size)
    got = P.extract_patches(x, patch, starts)
    assert got.is_contiguous() and torch.equal(got, _old_extract_patches(x, patch, starts))
    assert (P._even_step(starts, patch) is not None) == fold
    patches = torch.rand_like(got)  # overlaps now average different values
    background = torch.rand(3, 2, size, size)
    for bg in (None, background):
        assert torch.equal(P.reassemble(patches, size, starts, bg), _old_reassemble(patches, size, starts, bg))


# ----------------------------------------------------------------------------- shuffles

def _sorted_rows(t: torch.Tensor) -> torch.Tensor:
    """Rows of t (L, D) in lexicographic order, to compare multisets of patches."""
    rows = sorted(t.tolist())
    return torch.tensor(rows)


@pytest.mark.parametrize("size, patch", [(28, 10), (28, 7), (28, 4), (12, 6)])
def test_shuffle_patches_is_a_permutation_of_the_patches(size, patch):
    x = torch.rand(4, 1, size, size)
    y = P.shuffle_patches(x, patch, torch.Generator().manual_seed(0))
    starts = P.centered_starts(size, patch)
    px, py = P.extract_patches(x, patch, starts), P.extract_patches(y, patch, starts)  # (B, L, 1, p, p)
    for b in range(x.shape[0]):
        assert torch.equal(_sorted_rows(px[b].flatten(1)), _sorted_rows(py[b].flatten(1)))
        # derangement: no cell keeps its own patch
        assert not (px[b] == py[b]).flatten(1).all(dim=1).any()
    # pixels outside the grid stay where they were
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[starts[0]:starts[-1] + patch, starts[0]:starts[-1] + patch] = True
    assert torch.equal(y[..., ~inside], x[..., ~inside])


def test_shuffle_patches_is_seeded_and_per_image():
    x = torch.rand(1, 1, 28, 28).repeat(6, 1, 1, 1)  # six copies of one image
    a = P.shuffle_patches(x, 7, torch.Generator().manual_seed(3))
    b = P.shuffle_patches(x, 7, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert len({tuple(img.flatten().tolist()) for img in a}) > 1  # the copies got different permutations


def test_shuffle_without_derangement_can_keep_cells_and_one_cell_is_a_no_op():
    x = torch.rand(64, 1, 8, 8)
    y = P.shuffle_patches(x, 4, torch.Generator().manual_seed(0), derange=False)  # 4 cells, 64 images
    kept = (P.extract_patches(x, 4) == P.extract_patches(y, 4)).flatten(2).all(dim=2)  # (B, L)
    assert kept.any()  # some cell stayed: plain permutations, as asked
    assert torch.equal(P.shuffle_patches(x, 8), x)


# ----------------------------------------------------------------------------- discriminator windows and scores

def _positive(d: nn.Module) -> nn.Module:
    """Eval mode and positive conv weights, so every pixel of a window gets a nonzero gradient."""
    d.eval()
    for m in d.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data.abs_()
    return d.double()


def _touched_box(d: nn.Module, size: int, i: int, j: int) -> tuple[int, int, int, int]:
    """Brute force: the (top, bottom, left, right) pixels whose gradient from logit (i, j) is nonzero."""
    x = torch.rand(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    d(x)[0, 0, i, j].backward()
    rows, cols = (x.grad[0, 0].abs() > 0).nonzero(as_tuple=True)
    return rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()


@pytest.mark.parametrize("patch", [4, 10, 18, 22])
def test_receptive_window_matches_the_gradient_support(patch):
    d = _positive(PatchDiscriminator(1, patch, ndf=4))
    size = 64
    n = d.output_size(size)
    for i, j in [(0, 0), (n // 2, n // 2 + 1), (n - 1, n - 1)]:
        top, left, side = P.receptive_window(d, i, j)
        assert side == patch
        clip = lambda a, b: (max(a, 0), min(b, size - 1))  # noqa: E731
        assert _touched_box(d, size, i, j) == (*clip(top, top + side - 1), *clip(left, left + side - 1))


def test_receptive_window_of_the_full_image_discriminator_covers_the_image():
    d = FullImageDiscriminator(GREY28, ndf=4)
    top, left, side = P.receptive_window(d)
    assert top <= 0 and left <= 0 and top + side >= 28 and side == d.receptive_field
    assert _touched_box(_positive(d), 28, 0, 0) == (0, 27, 0, 27)


def _trained_discriminator() -> PatchDiscriminator:
    d = PatchDiscriminator(1, 10, ndf=4)
    for _ in range(3):  # running statistics that differ from any batch's own
        d(torch.rand(8, 1, 28, 28) * 3)
    return d


def _by_hand(d: PatchDiscriminator, x: torch.Tensor) -> torch.Tensor:
    """Reference: the layers one by one, BatchNorm with the batch's own mean and (biased) variance."""
    h = x
    for m in d.net:
        if isinstance(m, nn.BatchNorm2d):
            mean, var = h.mean(dim=(0, 2, 3), keepdim=True), h.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
            h = (h - mean) / torch.sqrt(var + m.eps) * m.weight[None, :, None, None] + m.bias[None, :, None, None]
        else:
            h = m(h)
    return torch.sigmoid(h)[:, 0].detach()


def test_patch_scores_use_the_batch_statistics_like_the_game_and_touch_nothing():
    d = _trained_discriminator().eval()
    running = d.net[3].running_mean.clone()
    x = torch.rand(6, 1, 28, 28)
    got = P.patch_scores(d, x)
    assert got.shape == (6, 7, 7)
    torch.testing.assert_close(got, _by_hand(d, x))
    assert not d.training and torch.equal(d.net[3].running_mean, running)  # mode and statistics untouched
    chunks = P.patch_scores(d, x, batch_size=3)  # each chunk is its own batch
    torch.testing.assert_close(chunks, torch.cat([_by_hand(d, x[:3]), _by_hand(d, x[3:])]))


def test_patch_scores_with_running_statistics_are_eval_mode_and_per_image():
    d = _trained_discriminator().train()
    x = torch.rand(5, 1, 28, 28)
    got = P.patch_scores(d, x, batch_stats=False)
    assert d.training
    with torch.no_grad():
        ref = torch.sigmoid(d.eval()(x))[:, 0]
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(P.patch_scores(d, x[:2], batch_stats=False), got[:2])


@pytest.mark.parametrize("patch", [4, 10, 18])
def test_upsampled_score_peaks_at_the_window_centre(patch):
    d = PatchDiscriminator(1, patch, ndf=4)
    n = d.output_size(28)
    i, j = n // 2, 1
    scores = torch.zeros(1, n, n)
    scores[0, i, j] = 1.0
    heat = P.upsample_scores(scores, d.stride, 28)[0]
    assert heat.shape == (28, 28)
    top, left, side = P.receptive_window(d, i, j)
    rows, cols = (heat == heat.max()).nonzero(as_tuple=True)
    centre_r, centre_c = top + (side - 1) / 2, left + (side - 1) / 2
    assert (rows.float().mean() - centre_r).abs() <= 0.5 and (cols.float().mean() - centre_c).abs() <= 0.5


def test_upsample_scores_extends_a_short_map_with_its_edge_values():
    scores = torch.arange(9.0).view(1, 3, 3)  # patch 22 on 28 pixels: 3 logits, stride 8 -> 24 pixels
    heat = P.upsample_scores(scores, 8, 28)
    assert heat.shape == (1, 28, 28)
    assert torch.equal(heat[0, :, 24:], heat[0, :, 23:24].expand(28, 4))
    assert torch.equal(heat[0, 24:], heat[0, 23:24].expand(4, 28))


def test_patch_features_are_the_body_before_the_last_conv_averaged_over_space():
    d = PatchDiscriminator(1, 10, ndf=4)
    for _ in range(3):  # running statistics that differ from a batch's own
        d(torch.rand(8, 1, 10, 10) * 3)
    x = torch.rand(6, 1, 10, 10)
    got = P.patch_features(d)(x)
    assert d.training  # the mode is restored
    d.eval()
    h = x
    for m in list(d.net)[:-1]:
        h = m(h)
    torch.testing.assert_close(got, h.mean(dim=(2, 3)).detach())
    assert got.shape == (6, 8)  # 2·ndf channels after the second stride-2 conv


# ----------------------------------------------------------------------------- nearest patches and attribution

def test_patch_bank_sources_point_at_their_crops():
    images = torch.rand(3, 1, 12, 12)
    bank, source = P.patch_bank(images, 5, stride=3)
    assert bank.shape == (3 * 16, 1, 5, 5)  # starts 0, 3, 6, 7
    for k in range(bank.shape[0]):
        n, t, s = source[k].tolist()
        assert torch.equal(bank[k], images[n, :, t:t + 5, s:s + 5])


def test_nearest_patches_match_brute_force():
    query, bank = torch.rand(7, 2, 3, 3), torch.rand(50, 2, 3, 3)
    dist, index = P.nearest_patches(query, bank, batch_size=3)
    for q in range(7):
        d = torch.stack([(query[q] - bank[k]).pow(2).sum().sqrt() for k in range(50)])
        assert index[q].item() == d.argmin().item()
        torch.testing.assert_close(dist[q], d.min())


def test_nearest_patches_ties_go_to_the_lowest_index():
    bank = torch.cat([torch.ones(2, 4), torch.zeros(3, 4)])
    dist, index = P.nearest_patches(torch.zeros(1, 4), bank)
    assert index.item() == 2 and dist.item() == 0


def _old_nearest_patches(query, bank, batch_size=256):
    """patches.nearest_patches before torch.cdist (the reference)."""
    q, b = query.flatten(1).float(), bank.flatten(1).float()  # (Q, D), (N, D)
    b_sq = (b * b).sum(dim=1)  # (N,)
    dist, index = [], []
    for k in range(0, q.shape[0], batch_size):
        qk = q[k:k + batch_size]  # (q, D)
        d2 = (qk * qk).sum(dim=1, keepdim=True) - 2 * qk @ b.T + b_sq  # (q, N) squared distances
        best = d2.argmin(dim=1)  # (q,)
        index.append(best)
        dist.append((qk - b[best]).norm(dim=1))  # exact distance of the chosen match
    return torch.cat(dist), torch.cat(index)


@pytest.mark.parametrize("quantized", [False, True])
def test_nearest_patches_equal_the_old_expansion(quantized):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(40, 1, 28, 28, generator=g) ** 3  # mostly dark, like digits
    if quantized:  # uint8 levels, and repeated images: exact duplicates in the bank
        images = (images * 255).round() / 255
        images[20:] = images[:20]
    bank, _ = P.patch_bank(images[:30], 10, stride=3)  # (30·36, 1, 10, 10)
    query = P.extract_patches(images[30:], 10).flatten(0, 1)  # (90, 1, 10, 10)
    dist, index = P.nearest_patches(query, bank, batch_size=64)
    old_dist, old_index = _old_nearest_patches(query, bank, batch_size=64)
    assert torch.equal(index, old_index)
    assert (dist - old_dist).abs().max() < 1e-5


def test_attribute_rebuilds_an_image_in_the_bank_exactly():
    x = torch.rand(2, 1, 12, 12)
    a = P.attribute(x, x, patch=5, stride=1)
    assert torch.equal(a.reassembled, x)
    assert a.distance.abs().max() == 0 and a.pixel_rmse(x).max() == 0
    assert a.starts == [0, 5, 7] and a.source.shape == (2, 9, 3)


def test_attribute_matches_a_brute_force_search_in_an_embedding():
    x, bank_images = torch.rand(1, 1, 8, 8), torch.rand(4, 1, 8, 8)
    embed = lambda p: torch.stack([p.mean(dim=(1, 2, 3)), p.std(dim=(1, 2, 3))], dim=1)  # noqa: E731
    a = P.attribute(x, bank_images, patch=4, stride=2, embed=embed)
    ref = torch.zeros_like(x)
    for k, (t, s) in enumerate((t, s) for t in (0, 4) for s in (0, 4)):
        q = embed(x[:, :, t:t + 4, s:s + 4])[0]
        best, best_d = None, float("inf")
        for n in range(4):
            for bt in (0, 2, 4):
                for bs in (0, 2, 4):
                    d = (embed(bank_images[n:n + 1, :, bt:bt + 4, bs:bs + 4])[0] - q).norm().item()
                    if d < best_d - 1e-6:
                        best, best_d = (n, bt, bs), d
        assert tuple(a.source[0, k].tolist()) == best
        assert abs(a.distance[0, k].item() - best_d) < 1e-5
        n, bt, bs = best
        ref[:, :, t:t + 4, s:s + 4] = bank_images[n, :, bt:bt + 4, bs:bs + 4]
    assert torch.equal(a.reassembled, ref)


# ----------------------------------------------------------------------------- teacher and discriminator readouts

def test_measure_matches_hand_formulas():
    teacher = get_classifier("lenet5", GREY28).eval()
    d = PatchDiscriminator(1, 10, ndf=4)
    x = torch.rand(5, 1, 28, 28)
    r = P.measure(teacher, x, d, features=True, batch_size=2)
    with torch.no_grad():
        p = torch.softmax(teacher(x), dim=1)
        feats = teacher.forward_features(x)
    torch.testing.assert_close(r["confidence"], p.max(dim=1).values)
    torch.testing.assert_close(r["entropy"], -(p * p.log()).sum(dim=1))
    assert torch.equal(r["pred"], p.argmax(dim=1))
    torch.testing.assert_close(r["d_real"], P.patch_scores(d, x).mean(dim=(1, 2)))
    running = P.measure(teacher, x, d, batch_stats=False)["d_real"]
    torch.testing.assert_close(running, P.patch_scores(d, x, batch_stats=False).mean(dim=(1, 2)))
    torch.testing.assert_close(r["features"], feats)
    assert set(P.measure(teacher, x)) == {"confidence", "entropy", "pred"}


def test_patch_index_reuses_its_bank_and_agrees_with_attribute():
    bank_images, x = torch.rand(3, 1, 12, 12), torch.rand(2, 1, 12, 12)
    calls = []

    def embed(p):
        calls.append(p.shape[0])
        return p.flatten(1)[:, :5]

    index = P.PatchIndex(bank_images, 4, stride=2, embed=embed)
    assert len(index) == 3 * 25 and calls == [75]
    a, b = index.attribute(x), index.attribute(x[:1])
    assert calls == [75, 18, 9]  # only the queries are embedded again
    ref = P.attribute(x, bank_images, 4, stride=2, embed=embed)
    assert torch.equal(a.reassembled, ref.reassembled) and torch.equal(a.source, ref.source)
    assert torch.equal(b.reassembled, a.reassembled[:1])


def test_patch_rmse_is_zero_for_the_banks_own_images_and_the_mean_rmse_of_each_set():
    bank_images = torch.rand(3, 1, 12, 12)
    other = torch.rand(2, 1, 12, 12)
    r = P.patch_rmse({"bank": bank_images, "other": other, "flat": torch.full((2, 1, 12, 12), 0.5)}, bank_images, 4)
    assert r["bank"] == 0  # every patch of a bank image is in the bank
    a = P.attribute(other, bank_images, 4, stride=2)
    assert r["other"] == pytest.approx(a.pixel_rmse(other).mean().item()) and r["other"] > 0
    assert set(r) == {"bank", "other", "flat"} and all(isinstance(v, float) for v in r.values())
