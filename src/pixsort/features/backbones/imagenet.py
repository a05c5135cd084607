"""The ImageNet-1k label space of the built-in backbones' classifier heads: class names
and coarse groups.

ImageNet-1k splits what people name in one word into many classes (120 dog breeds, five
house cats, twenty kinds of boat), so a cluster of cats has no single class most of
its members share.  The groups below gather such runs of classes under the word a
person would use ("dog", "cat", "watercraft"); classes outside every group (most
household objects) are named only by their own class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import torch

__all__ = ["IMAGENET_GROUPS", "ClassGuesses", "ImagenetLabels", "guess_classes", "imagenet_labels"]

N_CLASSES = 1000


def _span(a: int, b: int) -> list[int]:
    return list(range(a, b + 1))


# group -> classifier indices (see imagenet_classes.tsv for the names)
IMAGENET_GROUPS: dict[str, list[int]] = {
    "fish": _span(0, 6) + _span(389, 397),
    "bird": _span(7, 24) + _span(80, 100) + _span(127, 146),
    "frog or salamander": _span(25, 32),
    "reptile": _span(33, 68),
    "spider or scorpion": _span(70, 78),
    "sea creature": _span(107, 126) + _span(327, 329),
    "whale or seal": _span(147, 150),
    "dog": _span(151, 268),
    "wolf or fox": _span(269, 280),
    "cat": _span(281, 285),
    "big cat": _span(286, 293),
    "bear": _span(294, 297),
    "insect": _span(300, 326),
    "small mammal": _span(102, 106) + [298, 299] + _span(330, 338) + _span(356, 364),
    "hoofed animal": _span(339, 355),
    "monkey or ape": _span(365, 384),
    "elephant": [101, 385, 386],
    "car": [436, 468, 475, 479, 511, 573, 575, 581, 609, 627, 656, 661, 751, 817],
    "truck or van": [407, 555, 561, 569, 595, 675, 717, 734, 803, 864, 866, 867],
    "bus": [654, 660, 757, 779, 874],
    "bicycle or motorbike": [444, 665, 670, 671, 870, 880],
    "train": [466, 547, 565, 705, 820, 829],
    "aircraft": [404, 405, 812, 895, 908],
    "watercraft": [403, 472, 484, 510, 554, 576, 625, 628, 694, 724, 780, 814, 833, 871, 913, 914],
    "food": _span(924, 957) + _span(959, 967) + [969],
    "landscape": _span(970, 980),
    "plant or mushroom": _span(984, 997),
}


@dataclass(frozen=True)
class ImagenetLabels:
    """Names of the 1,000 classes and of the groups, and the matrix that sums class
    probabilities into group probabilities.

    Attributes
    ----------
    class_names : tuple of str, length 1000
    group_names : tuple of str, length G
    group_matrix : ndarray of float32, shape (1000, G)  -- 1 where a class is in a group
    """

    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    group_matrix: np.ndarray


@cache
def imagenet_labels() -> ImagenetLabels:
    text = resources.files(__package__).joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    names = [line.split("\t")[2] for line in text.splitlines() if line and not line.startswith("#")]
    if len(names) != N_CLASSES:
        raise RuntimeError(f"imagenet_classes.tsv lists {len(names)} classes, not {N_CLASSES}")
    groups = tuple(IMAGENET_GROUPS)
    matrix = np.zeros((N_CLASSES, len(groups)), dtype=np.float32)
    for g, members in enumerate(IMAGENET_GROUPS.values()):
        matrix[members, g] = 1.0
    if (matrix.sum(axis=1) > 1).any():  # a class in two groups would be counted twice
        raise RuntimeError("an ImageNet class sits in two groups")
    return ImagenetLabels(tuple(names), groups, matrix)


@dataclass(frozen=True)
class ClassGuesses:
    """Per image: the most likely ImageNet class and group, with their probabilities.

    Attributes
    ----------
    class_index, group_index : ndarray of int64, shape (n,)  -- group -1: in no group
    class_prob, group_prob : ndarray of float32, shape (n,)  -- softmax probability (the
        group's is the sum over its classes; 0 where the image is in no group)
    """

    class_index: np.ndarray
    class_prob: np.ndarray
    group_index: np.ndarray
    group_prob: np.ndarray


def guess_classes(classify: Callable[[torch.Tensor], torch.Tensor], pooled: np.ndarray, chunk: int) -> ClassGuesses:
    """:class:`ClassGuesses` of pooled head features ``(n, C)`` through ``classify``
    (pooled -> logits ``(n, 1000)``), ``chunk`` rows at a time (memory: one chunk's
    probabilities, not ``n x 1000``)."""
    labels = imagenet_labels()
    groups = torch.from_numpy(labels.group_matrix)
    n = len(pooled)
    out = ClassGuesses(np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.int64), np.empty(n, np.float32))
    with torch.inference_mode():
        for s in range(0, n, chunk):
            logits = classify(torch.from_numpy(np.ascontiguousarray(pooled[s : s + chunk])))
            if logits.shape[1] != N_CLASSES:
                raise ValueError(f"the classifier gives {logits.shape[1]} outputs, not ImageNet's {N_CLASSES}")
            probs = torch.softmax(logits.float(), dim=1)
            top = probs.max(dim=1)
            group = (probs @ groups).max(dim=1)
            out.class_index[s : s + chunk] = top.indices.numpy()
            out.class_prob[s : s + chunk] = top.values.numpy()
            out.group_prob[s : s + chunk] = group.values.numpy()
            out.group_index[s : s + chunk] = np.where(group.values.numpy() > 0, group.indices.numpy(), -1)
    return out
