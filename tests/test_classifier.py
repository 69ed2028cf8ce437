"""zoo's feature classifiers (issue 24): one per dataset family, shipped with a card; the CIFAR-10 network trained
on colour and grey images serves cifar10-gray through its first convolution summed over the colour channels."""
from __future__ import annotations

import pytest
import torch

from zoo import classifier
from zoo.errors import InputError


@pytest.mark.parametrize("dataset, channels, floor", [("mnist", 1, 0.99), ("mnist-bin", 1, 0.99),
                                                      ("cifar10", 3, 0.75), ("cifar10-gray", 1, 0.70)])
def test_every_built_in_dataset_has_a_shipped_classifier_with_its_accuracy(dataset, channels, floor):
    c = classifier.load(dataset)
    assert c.net.channels == channels and c.accuracy >= floor
    assert c.card["command"].startswith("python scripts/train_classifier.py ")
    feats = c.features(torch.rand(3, channels, 32 if "cifar" in dataset else 28, 32 if "cifar" in dataset else 28))
    assert feats.shape == (3, classifier.DIMS) and feats.dtype == torch.float64
    with pytest.raises(InputError, match=f"takes \\(N, {channels}, H, W\\)"):
        c.features(torch.rand(2, 2, 8, 8))


def test_the_grey_network_is_the_colour_one_shown_three_equal_channels():
    torch.manual_seed(0)
    net = classifier.FeatureNet(3)
    for m in net.modules():  # non-trivial statistics, so the comparison covers the batch norms too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    net.eval()
    grey = classifier.gray_net(net).eval()
    x = torch.rand(5, 1, 32, 32)
    assert grey.channels == 1
    torch.testing.assert_close(grey(x), net(x.expand(5, 3, 32, 32)), rtol=1e-5, atol=1e-5)
    # the shipped pair is such a pair: the grey file is the colour file's network, first convolution summed
    colour, shipped = classifier.load_file_state("cifar10"), classifier.load_file_state("cifar10-gray")
    first = "body.0.0.weight"
    torch.testing.assert_close(shipped[first], colour[first].sum(1, keepdim=True))
    assert all(torch.equal(shipped[k], colour[k]) for k in colour if k != first)


def test_grey_augmentation_puts_the_luma_in_all_three_channels():
    x = torch.rand(64, 3, 8, 8)
    recipe = {**classifier.RECIPES["cifar10"], "shift": 0, "flip": False, "gray": 0.5}
    out = classifier._augment(x, recipe, torch.Generator().manual_seed(0))
    luma = (x * torch.tensor(classifier.LUMA).view(1, 3, 1, 1)).sum(1)
    grey = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert 10 < int(grey.sum()) < 54  # about half
    torch.testing.assert_close(out[grey][:, 0], luma[grey])
    assert torch.equal(out[~grey], x[~grey])
