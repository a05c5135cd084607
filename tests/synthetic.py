"""Synthetic image sets for tests that must run without ``../shared/data``.

Plain functions (no pytest), imported by the test files as ``from synthetic import ...``
(``tests/`` is on ``sys.path`` under pytest's default import mode):

* :func:`level_images` - images whose class is their brightness band, each with its
  own level (the balancing tests read the class of what the network is fed);
* :func:`blob_image` / :func:`two_class_arrays` - a learnable two-class task (a faint bright
  blob on a noisy background), laid out like the PneumoniaMNIST slice of the
  real-data tests;
* :func:`pattern_image` / :func:`pattern_groups` - three groups of distinct colours and
  patterns, for clustering;
* :func:`write_class_folders` - any of these as a folder of class folders: PNG and
  JPEG, grey and RGB, different sizes, optionally a broken file.

Everything is seeded: the same call gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# ----------------------------------------------------------------------------- classes read from pixels


def level_images(
    counts: Sequence[int], size: int = 16, channels: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is readable from their mean brightness.

    Class ``c`` of ``K = len(counts)`` lives in brightness band ``c`` of [0, 256)
    (K equal bands).  Each image has its own base level, evenly spread over the
    middle half of its band (shuffled), plus a uniform per-pixel texture of +-15% of
    a band: no two images share bytes, a geometric augmentation changes the bytes but
    keeps the level, and the mean never leaves the band.

    Returns ``images`` uint8 ``(n, size, size, channels)`` and ``labels`` int64
    ``(n,)``, sorted by class.
    """
    rng = np.random.default_rng(seed)
    width = 256.0 / len(counts)
    images, labels = [], []
    for c, n in enumerate(counts):
        bases = (c + 0.5) * width + np.linspace(-0.25, 0.25, n) * width
        rng.shuffle(bases)
        texture = rng.uniform(-0.15, 0.15, (n, size, size, channels)) * width
        images.append(np.clip(np.round(bases[:, None, None, None] + texture), 0, 255).astype(np.uint8))
        labels.append(np.full(n, c, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def level_class(images: np.ndarray, n_classes: int) -> np.ndarray:
    """The class :func:`level_images` encoded in uint8 ``images`` (n, H, W, C)."""
    means = np.asarray(images, dtype=np.float64).reshape(len(images), -1).mean(axis=1)
    return np.minimum((means / (256.0 / n_classes)).astype(np.int64), n_classes - 1)


def image_means(images: np.ndarray) -> np.ndarray:
    """Mean pixel value of each image, shape (n,)."""
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1).mean(axis=1)


# ----------------------------------------------------------------------------- a learnable two-class task


def blob_image(label: int, hw: tuple[int, int], rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    """A noisy dark background (sd 18); class 1 adds a faint bright disc (+30 at its
    centre) away from the centre (left or right half at random, so an image and its
    mirror differ).  Faint on purpose: seed-cnn needs a few epochs to separate the
    classes (validation AUC 0.94, 0.99, 1.0 over three epochs), so resuming and
    best-epoch selection have something to get wrong.  uint8 (h, w, channels)."""
    h, w = hw
    image = rng.normal(70, 18, (h, w)) + rng.uniform(-10, 10)
    if label == 1:
        r = max(2.0, min(h, w) / 5)
        cy = rng.uniform(r, h - r)
        cx = rng.uniform(r, w / 2 - r / 2) if rng.random() < 0.5 else rng.uniform(w / 2 + r / 2, w - r)
        yy, xx = np.mgrid[:h, :w]
        image += 30 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)[..., None]
    return np.repeat(image, channels, axis=-1) if channels > 1 else image


def two_class_arrays(
    n_train: tuple[int, int] = (150, 150), n_val: tuple[int, int] = (80, 120), size: int = 28, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(xt, yt, xv, yv)``: uint8 ``(n, size, size, 1)`` grey images of :func:`blob_image`,
    class 0 first then class 1 in each split - the layout of the PneumoniaMNIST
    slice (150 + 150 train, 80 + 120 validation: always "1" scores 0.6)."""
    rng = np.random.default_rng(seed)

    def make(counts):
        y = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in enumerate(counts)])
        return np.stack([blob_image(int(c), (size, size), rng) for c in y]), y

    xt, yt = make(n_train)
    xv, yv = make(n_val)
    return xt, yt, xv, yv


# ----------------------------------------------------------------------------- clustering groups

PATTERN_GROUPS = ("red_stripes", "green_checks", "blue_rings")


def pattern_image(group: int, hw: tuple[int, int], rng: np.random.Generator, noise: float = 20.0) -> np.ndarray:
    """An RGB image of group 0 (red horizontal stripes), 1 (green checkerboard) or
    2 (blue concentric rings), with a random brightness offset (+-15) and Gaussian
    pixel noise.  The pattern is drawn in coordinates relative to the image size, so
    the groups stay apart after any resize.  uint8 (h, w, 3)."""
    h, w = hw
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    yy, xx = (yy + 0.5) / h, (xx + 0.5) / w
    if group == 0:
        pattern, colour = np.sin(2 * np.pi * 3 * yy), (210, 40, 40)
    elif group == 1:
        pattern, colour = np.sign(np.sin(2 * np.pi * 2 * xx) * np.sin(2 * np.pi * 2 * yy)), (40, 190, 50)
    elif group == 2:
        pattern, colour = np.cos(2 * np.pi * 3 * np.hypot(yy - 0.5, xx - 0.5)), (40, 60, 210)
    else:
        raise ValueError(f"group must be 0, 1 or 2, got {group}")
    image = np.array(colour, dtype=np.float64) * (0.8 + 0.2 * pattern[..., None]) + rng.uniform(-15, 15)
    image += rng.normal(0, noise, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def pattern_groups(n_per_group: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three groups of :func:`pattern_image` as arrays: uint8 ``(3 n, size, size, 3)``, labels ``(3 n,)``."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_group)
    return np.stack([pattern_image(int(g), (size, size), rng) for g in y]), y


# ----------------------------------------------------------------------------- folders on disk


def varied_sizes(i: int, base: int = 24) -> tuple[int, int]:
    """Height and width of the i-th image of a folder: square and oblong, around ``base``."""
    return [(base, base), (base + 8, base), (base - 4, base + 6), (base + 12, base + 12)][i % 4]


def write_class_folders(
    root: str | Path,
    n_per_class: dict[str, int],
    make_image: Callable[[int, int, tuple[int, int], np.random.Generator], np.ndarray],
    *,
    base_size: int = 24,
    grey_every: int = 3,
    jpeg_every: int = 2,
    name: str = "{cls}_{i:03d}",
    broken: str | None = None,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Write ``root/<class>/<file>`` for each class of ``n_per_class``.

    ``make_image(class_index, i, (h, w), rng)`` draws image ``i`` of a class (uint8
    (h, w, 1 or 3)) at :func:`varied_sizes`; every ``jpeg_every``-th file is a JPEG
    (quality 95) and the others PNG; every ``grey_every``-th is saved as grey ("L"),
    the others as RGB (0: never grey).  ``name`` formats the file stem from ``cls``,
    ``i`` and ``group`` (= i // 2, two files per group, e.g. a patient).  ``broken``:
    the name of a file of non-image bytes added to the first class.

    Returns the written image paths per class, in order (the broken file excluded).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for c, (cls, n) in enumerate(n_per_class.items()):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        written[cls] = []
        for i in range(n):
            pixels = make_image(c, i, varied_sizes(i, base_size), rng)
            image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
            grey = grey_every and i % grey_every == grey_every - 1
            image = image.convert("L" if grey else "RGB")
            jpeg = jpeg_every and i % jpeg_every == jpeg_every - 1
            path = folder / (name.format(cls=cls, i=i, group=i // 2) + (".jpg" if jpeg else ".png"))
            image.save(path, **({"quality": 95} if jpeg else {}))
            written[cls].append(path)
    if broken is not None:
        first = next(iter(n_per_class))
        (root / first / broken).write_bytes(b"this is not an image, only bytes")
    return written


def write_broken_files(folder: str | Path, good: Path | None = None) -> list[Path]:
    """``corrupt.jpeg`` (a JPEG header then garbage) and, when ``good`` is given,
    ``truncated.<suffix>`` (its first 200 bytes) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / "corrupt.jpeg"]
    out[0].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    if good is not None:
        truncated = folder / f"truncated{good.suffix}"
        truncated.write_bytes(good.read_bytes()[:200])
        out.append(truncated)
    return out


def write_images(root: str | Path, images: dict[str, np.ndarray], quality: int = 95) -> dict[str, Path]:
    """Write each uint8 image (h, w, 1 or 3) of ``images`` at ``root / <relative path>``
    (PNG or JPEG by the suffix); returns the paths by the same keys."""
    root = Path(root)
    out = {}
    for rel, pixels in images.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[-1] == 1 else pixels)
        image.save(path, **({"quality": quality} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
        out[rel] = path
    return out


def level_picture(
    c: int, hw: tuple[int, int], rng: np.random.Generator, flip: bool = False, shift: float = 0.0
) -> np.ndarray:
    """A grey picture of class ``c`` of two: class 0 dark (level ~80), class 1 bright
    (~180), each with its own level (+-15) and pixel texture (sd 12); the seed CNN
    separates them within an epoch.  ``flip`` swaps the classes' looks (a set whose
    labels disagree with training), ``shift`` adds to every level (another scanner).
    uint8 (h, w, 1)."""
    level = 80 + 100 * (c if not flip else 1 - c) + rng.uniform(-15, 15) + shift
    return np.clip(level + rng.normal(0, 12, (*hw, 1)), 0, 255).astype(np.uint8)
