"""A pretrained backbone's input size against accuracy on small-picture sets: each set
embedded by the default backbone (Lite1, each image averaged with its mirror) at 240 px
(its own size), 192, 160 and 128 px, then the default stages at the true k
(``fusion.stages``; 3 seeds on a whole set, 3 seeded draws on a subset).

    flock /tmp/pixsort-heavy.lock python bench/input_size.py --cache /tmp/input-size

Sets (train images only; no test split is read): the CIFAR-10 sample (10,000 JPEGs of
32 px) and class-stratified draws of 1,000 / 2,000 / 5,000 of it, two uneven subsets of 4
and 7 of its classes (as in ``bench/k_choice.py``), PneumoniaMNIST train (4,708 of 28 px)
and scikit-learn's digits (1,797 of 8 px).  Embeddings are kept in ``--cache``.
``pixsort cluster DIR --size N`` embeds at N px.

``--variants`` names other columns: ``BACKBONES@SIZE`` with backbones joined by ``+``
(``lite0+lite1+lite2@160``: the three embeddings at 160 px concatenated, each layer
L2-normalised by the reducer, as in ``bench/fusion.py``); a ``:plain`` suffix embeds the
images alone, without their mirror images (``--no-tta``: half the forwards).  The default is
the columns above: ``lite1@240 lite1@192 lite1@160 lite1@128``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fusion import stages
from params_n import stratified
from pixsort.base.runtime import cpu_description
from pixsort.features import PretrainedExtractor

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
VARIANTS = ("lite1@240", "lite1@192", "lite1@160", "lite1@128")
UNEVEN = {"uneven4": (1000, 600, 300, 150), "uneven7": (1000, 700, 500, 350, 250, 150, 100)}


def small_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (uint8 RGB images (n, h, w, 3), labels (n,))."""
    folder = DATA / "cifar10_sample" / "train"
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    classes = sorted({p.parent.name for p in paths})
    cifar = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    sets = {"cifar": (cifar, np.array([classes.index(p.parent.name) for p in paths]))}
    with np.load(DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz") as d:
        sets["pneumonia"] = (np.repeat(d["train_images"][..., None], 3, -1), d["train_labels"][:, 0].astype(int))
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.round(digits.images * 255 / 16).astype(np.uint8)
    sets["digits"] = (np.repeat(grey[..., None], 3, -1), digits.target)
    return sets


def embed(
    name: str, images: np.ndarray, backbone: str, size: int, cache: Path, mirror: bool = True
) -> tuple[np.ndarray, list[int]]:
    extractor = PretrainedExtractor(backbone, layers=2, progress=False, input_size=size)
    short = backbone.replace("efficientnet_", "")
    file = cache / (f"{name}-{size}" if short == "lite1" else f"{name}-{short}-{size}")
    file = file.with_name(file.name + ("" if mirror else "-plain") + ".npy")
    if not file.exists():
        t = time.perf_counter()
        vectors = extractor.transform(images)
        if mirror:
            vectors = (vectors + extractor.transform(np.ascontiguousarray(images[:, :, ::-1]))) / 2
        np.save(file, vectors)
        forwards = (2 if mirror else 1) * len(images)
        print(f"{name}, {short} at {size} px: {forwards} forwards in {time.perf_counter() - t:.0f} s", flush=True)
    return np.load(file), list(extractor.feature_blocks)


def variant(name: str, images: np.ndarray, spec: str, cache: Path) -> tuple[np.ndarray, list[int]]:
    """The vectors and layer widths of ``spec`` (``lite0+lite1@160``, ``lite1@160:plain``)
    for one set."""
    spec, _, option = spec.partition(":")
    backbones, size = spec.split("@")
    mirror = option != "plain"
    parts = [embed(name, images, f"efficientnet_{b}", int(size), cache, mirror) for b in backbones.split("+")]
    return np.concatenate([v for v, _ in parts], axis=1), sum((b for _, b in parts), [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/input-size"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = ap.parse_args(argv)
    columns = args.variants
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (images, y) in small_sets().items():
        vectors = {s: variant(name, images, s, args.cache) for s in columns}
        k = len(np.unique(y))
        whole = f"{name} ({len(y)}, k={k}, {images.shape[1]} px)"
        rows.append((whole, {s: [stages(v, b, y, k, seed) for seed in range(3)] for s, (v, b) in vectors.items()}))
        if name != "cifar":
            continue
        for n in (1000, 2000, 5000):
            picks = [stratified(y, n, d) for d in range(3)]
            accs = {s: [stages(v[p], b, y[p], k, d) for d, p in enumerate(picks)] for s, (v, b) in vectors.items()}
            rows.append((f"cifar {n} (3 draws)", accs))
        for label, sizes in UNEVEN.items():
            picks = []
            for seed in range(3):
                rng = np.random.default_rng(seed)
                chosen = rng.choice(k, len(sizes), replace=False)
                picks.append(np.sort(np.concatenate(
                    [rng.choice(np.flatnonzero(y == c), m, replace=False) for c, m in zip(chosen, sizes)]
                )))  # fmt: skip
            accs = {s: [stages(v[p], b, y[p], len(sizes), d) for d, p in enumerate(picks)]
                    for s, (v, b) in vectors.items()}  # fmt: skip
            rows.append((f"cifar {label} (3 draws)", accs))
    print(f"\nCPU: {cpu_description()}\n")
    print("| set | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label, accs in rows:
        best = max(columns, key=lambda s: np.mean(accs[s]))
        cells = [(f"**{np.mean(accs[s]):.3f}**" if s == best else f"{np.mean(accs[s]):.3f}") for s in columns]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
