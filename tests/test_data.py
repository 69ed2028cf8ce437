"""Datasets read from standard layouts, with clear errors when they are missing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.data import CIFAR_CLASSES, load_dataset, to_gray


def test_mnist_splits_from_torchvision_layout(mnist_dir):
    train = load_dataset("mnist", "train", mnist_dir)
    val = load_dataset("mnist", "val", mnist_dir)
    test = load_dataset("mnist", "test", mnist_dir)
    assert (len(train), len(val), len(test)) == (200, 5000, 200)
    assert train.images.dtype == torch.uint8 and train.image_shape == (1, 28, 28)
    x, y = test.batch(torch.arange(4))
    assert x.min() >= 0 and x.max() <= 1 and y.shape == (4,)


def test_binarized_mnist_fixed_test_and_dynamic_train(mnist_dir):
    a = load_dataset("mnist-bin", "test", mnist_dir)
    b = load_dataset("mnist-bin", "test", mnist_dir)
    assert torch.equal(a.images, b.images) and set(a.images.unique().tolist()) <= {0, 255}
    assert "seed 0" in a.describe()
    train = load_dataset("mnist-bin", "train", mnist_dir)
    x1, _ = train.batch(torch.arange(50), generator=torch.Generator().manual_seed(1))
    x2, _ = train.batch(torch.arange(50), generator=torch.Generator().manual_seed(2))
    assert set(x1.unique().tolist()) <= {0.0, 1.0} and not torch.equal(x1, x2)
    assert "dynamic" in train.describe()


def test_missing_dataset_says_which_files_go_where(tmp_path):
    with pytest.raises(zoo.DataError) as e:
        load_dataset("mnist-bin", "test", tmp_path)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte" in msg and str(tmp_path / "MNIST" / "raw") in msg and "--download" in msg
    with pytest.raises(zoo.DataError, match="cifar10-jpeg"):
        load_dataset("cifar10", "test", tmp_path)
    with pytest.raises(zoo.DataError, match="unknown dataset"):
        load_dataset("imagenet", "test", tmp_path)


def test_corrupt_idx_file_is_named(tmp_path, mnist_dir):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"garbage")
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"garbage")
    with pytest.raises(zoo.DataError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", "test", tmp_path)


def test_cifar_image_folder_layout_and_gray(tmp_path):
    rng = np.random.default_rng(0)
    for k, cls in enumerate(CIFAR_CLASSES):
        folder = tmp_path / "cifar10-jpeg" / "test" / cls
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    colour = load_dataset("cifar10", "test", tmp_path)
    assert colour.images.shape == (20, 3, 32, 32) and colour.copy == "cifar10-jpeg"
    # image folders list images class by class; zoo interleaves the classes so that every split mixes them
    assert colour.labels.tolist() == [k for _ in range(2) for k in range(10)]
    gray = load_dataset("cifar10-gray", "test", tmp_path)
    assert gray.images.shape == (20, 1, 32, 32)
    # luma matches PIL's convert("L") to within rounding
    first = Image.open(tmp_path / "cifar10-jpeg" / "test" / "airplane" / "0.png").convert("L")
    assert np.abs(np.asarray(first).astype(int) - gray.images[0, 0].numpy().astype(int)).max() <= 1
    again = load_dataset("cifar10", "test", tmp_path)  # from the decoded cache
    assert torch.equal(again.images, colour.images)
    with pytest.raises(zoo.DataError, match="32x32"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "cifar10-jpeg" / "test" / "cat" / "x.png")
        load_dataset("cifar10", "test", tmp_path)


def test_validation_split_of_an_image_folder_holds_every_class(tmp_path):
    """The last 5,000 training images must not be one class (a class-sorted folder would make them trucks)."""
    from zoo.data import interleave_classes
    labels = np.repeat(np.arange(10), 600)  # class-sorted, as a folder lists them
    order = interleave_classes(labels)
    val = labels[order][-5000:]
    assert np.bincount(val, minlength=10).tolist() == [500] * 10
    assert sorted(order.tolist()) == list(range(6000))
    uneven = np.array([0, 0, 0, 1, 2, 2])
    assert uneven[interleave_classes(uneven)].tolist() == [0, 1, 2, 0, 2, 0]


def test_to_gray_formula():
    rgb = np.array([[[[255]], [[0]], [[0]]], [[[0]], [[255]], [[0]]], [[[0]], [[0]], [[255]]]], np.uint8)
    assert to_gray(rgb).flatten().tolist() == [76, 150, 29]
