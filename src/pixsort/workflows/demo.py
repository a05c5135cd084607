"""The demo: cluster a real labelled image set that ships with scikit-learn (no
network, no data of the user's) and score it against the true digits."""

from __future__ import annotations

import os
from pathlib import Path

from pixsort.workflows.images import ClusterRun, cluster_images

N_DIGITS = 1797  # images in scikit-learn's load_digits

# What the demo clusters with, and why: the library default (EfficientNet-Lite1 at
# 240 px with mirror TTA: ~3,600 backbone passes for 1,797 images) takes minutes on a
# cold cache on 2 cores, far over the demo's budget.  Raw pixels take under a second
# for 8x8 digits and, with neighbour smoothing, k-means on them scored accuracy
# 0.833 / NMI 0.834 with k chosen by the default silhouette (12 over 2..12), 0.881 /
# 0.845 with --k-criterion stability (11; bench/k_choice.py, 2 cores).  So the demo uses
# ``pixels``; everything else (PCA by variance share, whitening, smoothing, k-means,
# k chosen by the default criterion, the report) is the default.
DEMO_FEATURES = "pixels"
DEMO_SIZE = 16  # decode size: 8x8 digits, enlarged a little for the montages
DEMO_K_RANGE = (2, 12)  # 10 digits: the true k is a candidate inside the range


def write_digits(root: Path) -> Path:
    """scikit-learn's 1,797 8x8 digits as ``root/<digit>/digit_<i>.png`` (greyscale,
    0..16 scaled to 0..255).  Kept when already complete."""
    from PIL import Image
    from sklearn.datasets import load_digits

    if root.is_dir() and sum(1 for _ in root.glob("*/*.png")) == N_DIGITS:
        return root
    digits = load_digits()
    pixels = (digits.images * (255.0 / 16.0)).round().clip(0, 255).astype("uint8")
    for i, (image, target) in enumerate(zip(pixels, digits.target)):
        folder = root / str(int(target))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"digit_{i:04d}.png")
    return root


def run_demo(out: str | os.PathLike, *, random_state: int = 0, view: str = "tsne") -> ClusterRun:
    """Write the digits into ``out/digits``, cluster them with k chosen without labels,
    score against the true digits, and write the outputs into ``out/clusters``."""
    out = Path(out)
    root = write_digits(out / "digits")
    return cluster_images(
        root,
        out / "clusters",
        view=view,
        score=True,
        title="Demo: hand-written digits",
        cache_dir=out / "cache",
        features=DEMO_FEATURES,
        image_size=DEMO_SIZE,
        k_min=DEMO_K_RANGE[0],
        k_max=DEMO_K_RANGE[1],
        random_state=random_state,
    )


__all__ = ["DEMO_K_RANGE", "N_DIGITS", "run_demo", "write_digits"]
