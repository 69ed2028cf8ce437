"""Train one of zoo's feature classifiers (the feature space of `cfd`, the judge of `class_accuracy`) by its recipe
in zoo.classifier.RECIPES, on the dataset's training split; writes zoo/classifiers/<family>.safetensors and its
card (test accuracy included).

    python scripts/train_classifier.py mnist            # data from $ZOO_DATA_DIR (see README: Datasets)
"""
from __future__ import annotations

import argparse

import torch

from zoo import classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("family", choices=sorted(classifier.RECIPES))
    ap.add_argument("--data-dir", default=None, help="dataset root (default $ZOO_DATA_DIR or ~/.cache/zoo/data)")
    ap.add_argument("--out", default=None, help="folder for the weights and card (default: zoo/classifiers)")
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    classifier.train(a.family, a.data_dir, a.out, a.epochs, a.seed, log=lambda s: print(s, flush=True))


if __name__ == "__main__":
    main()
