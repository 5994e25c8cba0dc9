"""Plots are valid PNG images of the expected size."""

import struct

import matplotlib
import matplotlib.colors
import matplotlib.image
import numpy
import pytest

from clreplay.evaluation import (
    plot_accuracy_curves,
    plot_accuracy_matrix,
    plot_comparison,
    render_plots,
)
from clreplay.evaluation.plots import (
    accuracy_curves_figure,
    accuracy_matrix_figure,
    comparison_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
R = [[0.6, 0.1, 0.2], [0.8, 0.9, 0.3], [0.7, 0.5, 1.0]]


def png_size(path):
    """(width, height) from the IHDR chunk, which must come first."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_heat_map_is_a_png_of_the_expected_size(tmp_path):
    path = plot_accuracy_matrix(R, tmp_path / "m.png")
    assert path == tmp_path / "m.png"
    # 3 experiences: max(4, 0.6*3 + 2.5) x max(3.5, 0.6*3 + 2) inches at 100 dpi
    assert png_size(path) == (430, 380)
    assert matplotlib.image.imread(path).shape == (380, 430, 4)


def test_curves_and_comparison_are_pngs(tmp_path):
    curves = plot_accuracy_curves(R[:2], tmp_path / "deep" / "c.png")  # folders are created
    assert png_size(curves) == (700, 450)
    compare = plot_comparison({"replay": R, "naive": [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]},
                              tmp_path / "cmp.png")
    assert png_size(compare) == (700, 450)
    image = matplotlib.image.imread(compare)
    assert image.shape == (450, 700, 4) and image[..., :3].std() > 0  # not a blank canvas


def test_render_plots_writes_both(tmp_path):
    paths = render_plots({"accuracy_matrix": R, "config": {"benchmark": "split_digits"}}, tmp_path)
    assert [p.name for p in paths] == ["accuracy_matrix.png", "accuracy_curves.png"]
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in paths)


def test_plotting_leaves_the_backend_alone(tmp_path):
    backend = matplotlib.get_backend()
    plot_accuracy_matrix(R, tmp_path / "m.png")
    assert matplotlib.get_backend() == backend


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="matrix must have at least one row"):
        plot_accuracy_matrix([], tmp_path / "m.png")
    with pytest.raises(ValueError, match="curves must be a non-empty dict"):
        plot_comparison({}, tmp_path / "c.png")
    assert not (tmp_path / "m.png").exists()


LONG = "accuracy matrix: split_fashion_mnist, derpp (alpha 0.2, beta 1.0), memory 200"
FIVE = [[1.0, 0, 0, 0, 0], [0.9, 0.9, 0, 0, 0], [0.8, 0.8, 0.8, 0, 0], [0.7, 0.7, 0.7, 0.7, 0],
        [0.6, 0.6, 0.6, 0.6, 0.6]]


@pytest.mark.parametrize("make", [
    lambda title: accuracy_matrix_figure(FIVE, title=title),
    lambda title: accuracy_matrix_figure(FIVE[:1][:1], title=title),
    lambda title: accuracy_curves_figure(FIVE, title=title),
    lambda title: comparison_figure({"a": FIVE}, title=title),
])
@pytest.mark.parametrize("title", [LONG, LONG + ", with a much longer description of the run " * 3])
def test_titles_fit_inside_the_figure(make, title):
    figure = make(title)
    figure.canvas.draw()  # the layout as saved
    texts = [t for t in figure.texts if t.get_text()] + [ax.title for ax in figure.axes if ax.get_title()]
    assert texts, "the title is drawn"
    for text in texts:
        box = text.get_window_extent()
        # Before: the heat map's title ran from x = -88 to 582 on a 550-pixel-wide figure.
        assert 0 <= box.x0 and box.x1 <= figure.bbox.width, (text.get_text(), box)
        assert 0 <= box.y0 and box.y1 <= figure.bbox.height
    assert " ".join(texts[0].get_text().split()) == " ".join(title.split())  # wrapped, not cut


def test_experiences_are_numbered_from_one_in_the_plots():
    figure = accuracy_matrix_figure(FIVE[:2])
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4", "5"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2"]
    curves = accuracy_curves_figure(FIVE).axes[0]
    assert [t.get_text() for t in curves.get_xticklabels()] == ["1", "2", "3", "4", "5"]
    labels = [line.get_label() for line in curves.get_lines()]
    assert labels[1:] == [f"experience {j}" for j in range(1, 6)]


def test_a_curve_of_one_point_is_not_hidden_by_the_mean():
    matrix = [[1.0, 0.0], [0.4, 0.8]]  # experience 2 has one point, (step 2, 0.8); the mean is 0.6
    matrix[1][0] = 0.8  # ...and now the mean sits on it: (0.8 + 0.8) / 2
    figure = accuracy_curves_figure(matrix)
    figure.canvas.draw()
    ax = figure.axes[0]
    last = [line for line in ax.get_lines() if line.get_label() == "experience 2"][0]
    x, y = ax.transData.transform((1, 0.8))
    pixels = numpy.asarray(figure.canvas.buffer_rgba())
    row, col = int(round(figure.bbox.height - y)), int(round(x))
    colour = pixels[row, col, :3] / 255.0
    # Before: the mean's black square was drawn over it and the pixel was black.
    assert colour == pytest.approx(matplotlib.colors.to_rgb(last.get_color()), abs=0.05)
