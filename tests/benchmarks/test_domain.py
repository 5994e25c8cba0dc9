"""Domain-incremental Fashion-MNIST (permuted, rotated), the class order and blurry boundaries."""

import pytest
import torch
from test_files import make_mnist_like

from clreplay.benchmarks import (
    class_incremental,
    load_fashion_mnist_datasets,
    permuted_fashion_mnist,
    rotated_fashion_mnist,
    split_digits,
)
from clreplay.benchmarks.domain import permute_pixels, pixel_permutations, rotate, rotation_angles
from clreplay.benchmarks.registry import parse_class_order
from clreplay.benchmarks.scenarios import blurry_members
from clreplay.data import ClassificationDataset


def _images(bench, stream="train_stream", i=0):
    data = getattr(bench, stream)[i].dataset
    return data.get_batch(torch.arange(len(data)))[0]


def test_permuted_experiences_hold_every_class_with_their_own_seeded_permutation(tmp_path):
    images, _ = make_mnist_like(tmp_path, n_train=20, n_test=10)
    bench = permuted_fashion_mnist(tmp_path, 3, seed=4)
    assert bench.name == "permuted_fashion_mnist" and bench.n_experiences == 3 and bench.n_classes == 10
    assert all(e.classes_in_this_experience == list(range(10)) for e in bench.train_stream + bench.test_stream)
    permutations = pixel_permutations(3, 16, seed=4)
    test = load_fashion_mnist_datasets(tmp_path)[1]
    original = test.get_batch(torch.arange(len(test)))[0]
    for i, p in enumerate(permutations):
        assert torch.equal(_images(bench, "test_stream", i), permute_pixels(original, p))
        assert torch.equal(_images(bench, "test_stream", i).flatten(1)[:, 0], original.flatten(1)[:, p[0]])
    again = permuted_fashion_mnist(tmp_path, 3, seed=4)
    assert torch.equal(_images(again, i=2), _images(bench, i=2))
    assert not torch.equal(_images(permuted_fashion_mnist(tmp_path, 3, seed=5), i=2), _images(bench, i=2))


def test_rotated_experiences_are_rotated_by_their_seeded_angle(tmp_path):
    make_mnist_like(tmp_path)
    bench = rotated_fashion_mnist(tmp_path, 2, seed=1)
    angles = rotation_angles(2, seed=1)
    assert all(0 <= a < 180 for a in angles) and angles[0] != angles[1]
    test = load_fashion_mnist_datasets(tmp_path)[1]
    base = test.get_batch(torch.arange(len(test)))[0]
    assert torch.equal(_images(bench, "test_stream", 1), rotate(base, angles[1]))


def test_rotation_by_quarter_turns_is_exact():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    assert torch.equal(rotate(x, 90.0), torch.rot90(x, 1, dims=(2, 3)))
    assert torch.equal(rotate(x, 180.0), torch.rot90(x, 2, dims=(2, 3)))


def test_class_order_label_and_explicit():
    assert split_digits(class_order="label").class_order == list(range(10))
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    assert [e.classes_in_this_experience for e in split_digits(class_order=order).train_stream][0] == [1, 3]
    assert parse_class_order("3,1,4,0,5,9,2,6,8,7") == order and parse_class_order("seeded") is None
    with pytest.raises(ValueError, match="class_order must be label, seeded or comma-separated class labels"):
        parse_class_order("3;1")
    with pytest.raises(ValueError, match="class_order must list distinct non-negative class labels, got '1,1'"):
        parse_class_order("1,1")


def test_blurry_boundaries_move_a_share_of_each_class_to_the_other_experiences():
    y = torch.arange(10).repeat_interleave(20)  # 20 samples of each of 10 classes
    members = blurry_members(y, [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]], 0.1, seed=0)
    assert sorted(torch.cat(members).tolist()) == list(range(200))  # every sample once
    for i, rows in enumerate(members):
        assert torch.bincount(y[rows], minlength=10)[[2 * i, 2 * i + 1]].tolist() == [18, 18]  # 2 moved out
    assert sum(len(m) for m in members) == 200
    data = ClassificationDataset(torch.randn(200, 2), y)
    bench = class_incremental(data, data, 5, class_order="label", blurry=0.1, seed=0)
    assert len(bench.train_stream[0].classes_in_this_experience) > 2  # other classes' samples appear
    assert bench.test_stream[0].classes_in_this_experience == [0, 1]  # the test stream is not blurred
    with pytest.raises(ValueError, match=r"blurry must be a share in \[0, 1\), got 1.0"):
        class_incremental(data, data, 5, blurry=1.0)
