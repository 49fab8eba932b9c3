"""mosaic.viz: layouts against hand-built references, figures draw what they claim, widget fallback."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from mosaic import patches as P  # noqa: E402
from mosaic import viz  # noqa: E402
from mosaic.models import FullImageDiscriminator, Generator, PatchDiscriminator, get_classifier  # noqa: E402
from mosaic.spec import ImageSpec  # noqa: E402

GREY28 = ImageSpec(1, 28, (0.5,), (0.25,), 10)


@pytest.fixture(autouse=True)
def _seed_and_close():
    torch.manual_seed(0)
    yield
    plt.close("all")


def test_image_grid_places_each_image_in_its_cell():
    x = torch.rand(5, 1, 4, 4)
    grid = viz.image_grid(x, nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        cell = grid[1 + 5 * r: 5 + 5 * r, 1 + 5 * c: 5 + 5 * c]
        np.testing.assert_allclose(cell, x[i, 0, :, :, None].expand(4, 4, 3).numpy())
    assert (grid[1 + 5:5 + 5, 1 + 10:5 + 10] == 1).all()  # the empty sixth cell stays white


def _old_image_grid(x, nrow=8, pad=1):
    """viz.image_grid before torchvision's make_grid (the reference)."""
    x = x.detach().float().clamp(0, 1).cpu()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)  # (B, 3, H, W)
    b, c, h, w = x.shape
    rows = (b + nrow - 1) // nrow
    grid = torch.ones(rows * (h + pad) + pad, nrow * (w + pad) + pad, c)
    for i in range(b):
        r, k = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = x[i].permute(1, 2, 0)
    return np.asarray(grid)


@pytest.mark.parametrize("b, c, nrow, pad", [(5, 1, 3, 1), (16, 3, 8, 1), (3, 1, 8, 1), (8, 1, 8, 1), (1, 1, 1, 1),
                                             (1, 3, 8, 2), (7, 3, 2, 0), (1, 3, 1, 0), (64, 1, 8, 1)])
def test_image_grid_equals_the_old_hand_written_grid(b, c, nrow, pad):
    x = torch.rand(b, c, 6, 5) * 1.4 - 0.2  # out-of-range values are clamped
    got, ref = viz.image_grid(x, nrow=nrow, pad=pad), _old_image_grid(x, nrow=nrow, pad=pad)
    assert got.dtype == ref.dtype == np.float32 and got.shape == ref.shape and got.flags.c_contiguous
    assert np.array_equal(got, ref)


def test_save_samples_writes_the_rounded_grid_like_a_runs_samples_png(tmp_path):
    from PIL import Image
    from torchvision.utils import save_image

    gen = Generator(GREY28, z_dim=8, ngf=4)
    viz.save_samples(gen, tmp_path / "a.png", z_dim=8, n=12, nrow=5)
    got = np.asarray(Image.open(tmp_path / "a.png"))
    grid = _old_image_grid(viz.sample(gen, 12, 8), nrow=5)  # the old layout
    assert got.shape == grid.shape and got.dtype == np.uint8
    assert np.array_equal(got, np.floor(grid * 255 + 0.5).astype(np.uint8))  # rounded
    assert np.abs(got.astype(int) - (grid * 255).astype(np.uint8)).max() <= 1  # old plt.imsave truncated: 1 level at most
    viz.save_samples(gen, tmp_path / "b.png", z_dim=8)  # 64 in rows of 8: the pixels of train's samples.png
    save_image(viz.sample(gen, 64, 8).clamp(0, 1), tmp_path / "c.png", nrow=8, padding=1, pad_value=1.0)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), np.asarray(Image.open(tmp_path / "c.png")))


# ----------------------------------------------------------------------------- discriminator views

@pytest.mark.parametrize("patch", [4, 10, 22])
def test_draw_receptive_field_draws_the_computed_window(patch):
    d = PatchDiscriminator(1, patch, ndf=4)
    ax = plt.subplots()[1]
    top, left, side = viz.draw_receptive_field(ax, torch.rand(1, 28, 28), d, unit=(1, 1))
    assert (top, left, side) == P.receptive_window(d, 1, 1) and side == patch
    solid = [r for r in ax.patches if isinstance(r, Rectangle) and r.get_linestyle() in ("-", "solid")]
    assert len(solid) == 1
    assert solid[0].get_xy() == (left - 0.5, top - 0.5) and solid[0].get_width() == side
    dots = ax.lines[0].get_xdata()
    n = d.output_size(28)
    assert len(dots) == n * n  # one dot per logit
    assert f"stride {d.stride}" in ax.get_title()


def test_draw_receptive_field_of_the_full_image_discriminator_shows_the_padding():
    d = FullImageDiscriminator(GREY28, ndf=4)
    ax = plt.subplots()[1]
    top, left, side = viz.draw_receptive_field(ax, torch.rand(1, 28, 28), d)
    assert side == d.receptive_field > 28
    lo, hi = ax.get_xlim()
    assert lo <= left - 0.5 and hi >= left + side - 0.5  # the whole window is in view


def test_overlay_heatmap_shows_the_heat_on_top():
    heat = torch.rand(28, 28)
    ax = plt.subplots()[1]
    im = viz.overlay_heatmap(ax, torch.rand(1, 28, 28), heat)
    assert ax.images[-1] is im
    np.testing.assert_allclose(np.asarray(im.get_array()), heat.numpy())


def test_readout_table_and_plot():
    readouts = {"a": {"confidence": torch.tensor([0.5, 0.7]), "entropy": torch.tensor([1.0, 2.0]),
                      "d_real": torch.tensor([0.1, 0.3])},
                "b": {"confidence": torch.tensor([0.9, 0.9, 0.6]), "entropy": torch.tensor([0.1, 0.2, 0.3]),
                      "d_real": torch.tensor([0.5, 0.5, 0.5])}}
    table = viz.readout_table(readouts)
    assert table.loc["a", "n"] == 2 and table.loc["b", "n"] == 3
    assert table.loc["a", "confidence mean"] == 0.6 and table.loc["b", "entropy mean"] == 0.2
    assert table.loc["a", "entropy std"] == round(float(np.std([1.0, 2.0], ddof=1)), 3)
    axes = viz.plot_readouts(readouts)
    means = axes[0].lines[-1].get_ydata()  # the mean markers of the first panel
    np.testing.assert_allclose(means, [0.6, 0.8], rtol=1e-6)


def test_explore_draws_one_static_figure_with_the_measured_numbers():
    teacher, d = get_classifier("lenet5", GREY28).eval(), PatchDiscriminator(1, 10, ndf=4)
    images = torch.rand(3, 1, 28, 28)
    fig = viz.explore(images, 1, 10, teacher, d, seed=5)
    assert len(fig.axes) == 4 and "image 1" in fig._suptitle.get_text()
    shuffled = P.shuffle_patches(images, 10, torch.Generator().manual_seed(5))  # the whole set, as documented
    conf = P.measure(teacher, shuffled[1:2])["confidence"].item()
    real = P.patch_scores(d, shuffled)[1].mean().item()
    assert f"shuffled on a 10px grid\nteacher conf {conf:.2f}" in fig.axes[1].get_title()
    assert f"real {real:.2f}" in fig.axes[2].get_title()
    np.testing.assert_allclose([b.get_height() for b in fig.axes[3].patches[10:]],
                               torch.softmax(teacher(shuffled[1:2]), dim=1)[0].detach().numpy(), rtol=1e-5)


# ----------------------------------------------------------------------------- mosaics

def test_pick_by_class_matches_brute_force():
    pred = torch.randint(0, 4, (40,))
    score = torch.rand(40)
    got = viz.pick_by_class(pred, score, num_classes=5, per_class=3)
    for c in range(5):
        members = sorted([i for i in range(40) if pred[i] == c], key=lambda i: -score[i].item())[:3]
        assert got[c].tolist() == members + [-1] * (3 - len(members))
    assert (got[4] == -1).all()  # class 4 never predicted


def test_class_rows_gathers_and_blanks():
    x = torch.rand(6, 1, 4, 4)
    index = torch.tensor([[2, 0], [5, -1]])
    rows = viz.class_rows(x, index)
    assert rows.shape == (4, 1, 4, 4)
    assert torch.equal(rows[0], x[2]) and torch.equal(rows[1], x[0]) and torch.equal(rows[2], x[5])
    assert (rows[3] == 1).all()


def test_plot_class_rows_one_row_per_class():
    x = torch.rand(10, 1, 28, 28)
    index = viz.pick_by_class(torch.arange(10) % 3, torch.rand(10), 3, 2)
    axes = viz.plot_class_rows({"synthetic": (x, index), "OOD": (x, index)}, ["a", "b", "c"])
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["a", "b", "c"]
    assert axes[0].images[0].get_array().shape[:2] == (3 * 29 + 1, 2 * 29 + 1)


def test_plot_attribution_titles_carry_the_distances():
    x = torch.rand(2, 1, 12, 12)
    a = P.attribute(x, torch.rand(3, 1, 12, 12), patch=4, stride=2)
    fig = viz.plot_attribution(x, {"pixel": a})
    assert f"d {a.distance[1].mean():.2f}" in fig.axes[3].get_title()
    assert f"rmse {a.pixel_rmse(x)[1]:.2f}" in fig.axes[3].get_title()


def test_plot_class_balance_bar_heights_are_fractions():
    preds = {"OOD": torch.tensor([0, 0, 1, 2]), "synthetic": torch.tensor([2, 2, 2, 2])}
    ax = viz.plot_class_balance(preds, ["a", "b", "c"])
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.5, 0.25, 0.25, 0.0, 0.0, 1.0])


def test_embed_2d_pca_projects_onto_the_top_two_components():
    feats = {"a": torch.randn(30, 5) * torch.tensor([5.0, 3, 1, 1, 1]), "b": torch.randn(20, 5) + 2}
    coords, explained = viz.embed_2d(feats)
    assert coords["a"].shape == (30, 2) and coords["b"].shape == (20, 2)
    x = torch.cat([feats["a"], feats["b"]]).double()
    x = x - x.mean(dim=0)
    u, s, vt = torch.linalg.svd(x, full_matrices=False)
    ref = (x @ vt[:2].T).numpy()
    got = np.concatenate([coords["a"], coords["b"]])
    for k in range(2):  # each axis up to its sign
        sign = np.sign(ref[:, k] @ got[:, k])
        np.testing.assert_allclose(got[:, k], sign * ref[:, k], atol=1e-4)
    np.testing.assert_allclose(explained, (s[:2] ** 2 / (s ** 2).sum()).numpy(), atol=1e-6)
    ax = viz.plot_embedding(coords)
    assert len(ax.collections) == 2


def test_embed_2d_rejects_unknown_methods():
    with pytest.raises(ValueError, match="pca"):
        viz.embed_2d({"a": torch.randn(4, 3)}, method="umap")


def test_browse_counts_the_teachers_predictions():
    gen, teacher = Generator(GREY28, z_dim=8, ngf=4), get_classifier("lenet5", GREY28).eval()
    fig = viz.browse(gen, teacher, cls=3, seed=1, z_dim=8, n=4, pool=32)
    pred = P.measure(teacher, viz.sample(gen, 32, 8, seed=1))["pred"]
    assert f"{int((pred == 3).sum())}/32 predicted" in fig.axes[0].get_title()


# ----------------------------------------------------------------------------- widgets with a static fallback

def test_widgets_are_live_only_in_a_jupyter_server_kernel(monkeypatch):
    import IPython

    assert viz.widgets_live() is False  # pytest: no IPython kernel
    ZMQInteractiveShell = type("ZMQInteractiveShell", (), {})  # the kernel's shell class, by name
    monkeypatch.setattr(IPython, "get_ipython", lambda: ZMQInteractiveShell())
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert viz.widgets_live() is False  # a kernel without a Jupyter server (papermill, nbval)
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/03.ipynb")
    assert viz.widgets_live() is True


@pytest.mark.parametrize("live", [False, None])  # None: auto-detected, False outside a Jupyter server
def test_interact_or_static_falls_back_to_one_static_call(live):
    calls = []
    shown = viz.interact_or_static(lambda index, size: calls.append((index, size)), {"index": 2, "size": 10},
                                   live=live, index=(0, 5), size=[4, 10])
    assert shown is False and calls == [(2, 10)]


@pytest.mark.filterwarnings("ignore:Widget.widgets is deprecated")  # the registry is how we find what was built
def test_interact_or_static_uses_real_ipywidgets_when_live():
    """Real ipywidgets (no mock): a functools.partial with fixed arguments works (interact needs a __name__
    and must not turn the fixed values into controls), the controls start at the static values, the
    function runs once per change, and its returned figure is not drawn a second time."""
    import functools

    import ipywidgets

    calls = []

    def draw(index, size, fixed):
        calls.append((index, size, fixed))
        return "a figure"

    before = set(ipywidgets.Widget.widgets)
    shown = viz.interact_or_static(functools.partial(draw, fixed=object()), {"index": 2, "size": 10}, live=True,
                                   index=(0, 5), size=[4, 10])
    assert shown is True and [c[:2] for c in calls] == [(2, 10)]
    new = [ipywidgets.Widget.widgets[k] for k in set(ipywidgets.Widget.widgets) - before]
    slider = next(w for w in new if isinstance(w, ipywidgets.IntSlider))
    dropdown = next(w for w in new if isinstance(w, ipywidgets.Dropdown))
    assert (slider.value, slider.min, slider.max, dropdown.value, dropdown.options) == (2, 0, 5, 10, (4, 10))
    slider.value = 4  # what moving the slider does
    assert [c[:2] for c in calls] == [(2, 10), (4, 10)]
    output = next(w for w in new if isinstance(w, ipywidgets.Output))
    assert not any("a figure" in str(o) for o in output.outputs)  # nothing returned is displayed


def test_explore_with_a_size_no_discriminator_has_draws_the_shuffle_grid():
    teacher = get_classifier("lenet5", GREY28).eval()
    fig = viz.explore(torch.rand(2, 1, 28, 28), 0, 7, teacher, PatchDiscriminator(1, 10, ndf=4))
    assert "7px grid" in fig.axes[0].get_title()
    assert len(fig.axes[0].lines) == 2 * 5  # 4 cells per axis: 5 borders, horizontal and vertical


def test_plot_score_maps_titles_are_mean_scores():
    d = PatchDiscriminator(1, 10, ndf=4)
    x = torch.rand(3, 1, 28, 28)
    fig = viz.plot_score_maps({"a": x, "b": x.flip(0)}, d, n=3)
    scores = P.patch_scores(d, x).mean(dim=(1, 2))
    assert [ax.get_title() for ax in fig.axes[:3]] == [f"{v:.2f}" for v in scores]
    assert fig.axes[0].get_ylabel() == "a" and fig.axes[3].get_ylabel() == "b"
