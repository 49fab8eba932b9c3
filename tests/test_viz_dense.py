"""Segmentation figures: label maps as colours, images over their label maps."""
import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from mosaic import viz  # noqa: E402


def test_mask_colors_background_black_void_white_classes_distinct():
    masks = torch.tensor([[[0, 1, 2], [3, 255, 1]]], dtype=torch.uint8)  # (1, 2, 3)
    rgb = viz.mask_colors(masks)
    assert rgb.shape == (1, 3, 2, 3) and 0 <= rgb.min() and rgb.max() <= 1
    assert torch.equal(rgb[0, :, 0, 0], torch.zeros(3)) and torch.equal(rgb[0, :, 1, 1], torch.ones(3))
    assert torch.equal(rgb[0, :, 0, 1], rgb[0, :, 1, 2])  # the same class, the same colour
    colours = {tuple(rgb[0, :, 0, j].tolist()) for j in range(3)} | {tuple(rgb[0, :, 1, 0].tolist())}
    assert len(colours) == 4  # classes 0..3 all differ


def test_plot_segmentation_draws_a_row_per_map_set():
    images = torch.rand(4, 1, 16, 16)
    masks = torch.randint(0, 11, (4, 16, 16))
    fig = viz.plot_segmentation(images, {"truth": masks, "teacher": masks.flip(2)})
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["images", "truth", "teacher"]
    matplotlib.pyplot.close(fig)


def test_plot_segmentation_legend_names_each_class_in_its_mask_colour():
    images = torch.rand(3, 1, 16, 16)
    masks = torch.randint(0, 4, (3, 16, 16))
    names = ["background", "a", "b", "c"]
    fig = viz.plot_segmentation(images, {"truth": masks}, class_names=names, title="t")
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == names
    colours = viz.mask_colors(torch.arange(4).view(1, 1, 4))[0, :, 0].T  # (4, 3): the colour of labels 0..3
    for patch, colour in zip(legend.get_patches(), colours):
        assert tuple(round(v, 4) for v in patch.get_facecolor()[:3]) == tuple(round(v, 4) for v in colour.tolist())
    matplotlib.pyplot.close(fig)


def test_plot_history_names_the_val_score_of_a_segmentation_run():
    history = [{"step": 1, "loss_s": 1.0}, {"step": 2, "loss_s": 0.5, "val_miou": 20.0}]
    ax = viz.plot_history(history, keys=("loss_s",))
    (right,) = [a for a in ax.figure.axes if a is not ax]
    assert right.get_ylabel() == "val mIoU (%)" and list(right.lines[0].get_ydata()) == [20.0]
    matplotlib.pyplot.close(ax.figure)
