"""Plots are valid PNG images of the expected size."""

import struct

import matplotlib
import matplotlib.image
import pytest

from clreplay.evaluation import (
    plot_accuracy_curves,
    plot_accuracy_matrix,
    plot_comparison,
    render_plots,
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
