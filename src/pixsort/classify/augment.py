"""On-the-fly image augmentation on whole batches (torch only, no torchvision).

One random affine map per image (zoom / random-resized-crop scale, shear, rotation,
translation, horizontal and vertical flips) is applied with a single
``affine_grid`` + ``grid_sample`` call, then contrast, brightness and gamma jitter,
then (each with its own probability) a Gaussian blur and Gaussian noise.  All
randomness comes from a ``torch.Generator``, so a seed reproduces a run.

Presets (``AUGMENT_PRESETS``):

``none``   no augmentation.
``light``  small zoom, rotation and shift, brightness/contrast; no flips (anatomy has
           a side: a mirrored chest film puts the heart on the wrong side).
``seed``   the published oversampling recipe (Keras ``ImageDataGenerator`` style):
           zoom 0.2, shear 0.2, rotation 30 deg, horizontal and vertical flips.
``strong`` ``seed`` plus random-resized-crop scale and brightness/contrast.
``xray``   what differs between X-ray sites and machines without changing the
           finding: framing (random-resized crop, small zoom, shift and rotation),
           exposure (brightness, contrast, gamma), sharpness (blur) and detector noise;
           no flips (anatomy has a side).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; zero disables a transform.

    Parameters
    ----------
    zoom : float
        Scale factor drawn from ``[1 - zoom, 1 + zoom]`` (>1 zooms in).
    crop_scale : float
        Random-resized-crop: the kept area fraction is drawn from ``[crop_scale, 1]``
        (0 disables); combined with ``zoom``.
    aspect : float
        Anisotropic scale: the width/height ratio is multiplied by a factor drawn
        log-uniformly from ``[1 / (1 + aspect), 1 + aspect]``.  Images squashed to a
        square keep their original aspect ratio as a distortion a network can read
        (in the Kaggle chest X-ray train split pneumonia films are wider: median
        width/height 1.49 against 1.20 for normal ones), and this breaks that shortcut.
    shear : float
        Shear (as Keras: shear angle in radians) drawn from ``[-shear, shear]``.
    rotation : float
        Rotation in degrees drawn from ``[-rotation, rotation]``.
    shift : float
        Translation as a fraction of the size, from ``[-shift, shift]`` per axis.
    hflip, vflip : float
        Probability of a horizontal / vertical flip.
    brightness, contrast : float
        Additive brightness from ``[-b, b]`` (in [0, 1] pixel units) and a
        multiplicative contrast factor from ``[1 - c, 1 + c]`` around the image mean.
    gamma : float
        Gamma exponent drawn log-uniformly from ``[1 / (1 + g), 1 + g]``.
    blur : float
        Probability of a Gaussian blur with sigma drawn from ``[0.3, blur_sigma]`` px.
    blur_sigma : float
    noise : float
        Probability of additive Gaussian noise with sigma drawn from ``[0, noise_sigma]``.
    noise_sigma : float
    """

    zoom: float = 0.0
    crop_scale: float = 0.0
    aspect: float = 0.0
    shear: float = 0.0
    rotation: float = 0.0
    shift: float = 0.0
    hflip: float = 0.0
    vflip: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    blur: float = 0.0
    blur_sigma: float = 1.5
    noise: float = 0.0
    noise_sigma: float = 0.03

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"augment {name} must be >= 0, got {value}")
        if max(self.hflip, self.vflip, self.blur, self.noise, self.crop_scale) > 1 or self.zoom >= 1:
            raise ValueError("flip, blur and noise probabilities and crop_scale must be <= 1, zoom < 1")

    @property
    def is_identity(self) -> bool:
        sizes = {"blur_sigma", "noise_sigma"}  # ranges of transforms that are off unless their probability is set
        return not any(v for k, v in asdict(self).items() if k not in sizes)

    @property
    def is_geometric(self) -> bool:
        return any(
            (self.zoom, self.crop_scale, self.aspect, self.shear, self.rotation, self.shift, self.hflip, self.vflip)
        )

    def to_dict(self) -> dict:
        return asdict(self)


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "light": AugmentConfig(zoom=0.1, rotation=10, shift=0.05, brightness=0.1, contrast=0.1),
    "seed": AugmentConfig(zoom=0.2, shear=0.2, rotation=30, hflip=0.5, vflip=0.5),
    "strong": AugmentConfig(
        zoom=0.2, crop_scale=0.6, shear=0.2, rotation=30, shift=0.1, hflip=0.5, vflip=0.5, brightness=0.2, contrast=0.2
    ),
    "xray": AugmentConfig(
        zoom=0.1,
        crop_scale=0.7,
        aspect=0.35,
        rotation=10,
        shift=0.06,
        brightness=0.15,
        contrast=0.2,
        gamma=0.3,
        blur=0.3,
        noise=0.3,
    ),
}


# Fixed views of every image: the frozen part's features are cached for each, the
# trainable part learns from all of them, and predictions average over them.  ``aspect``
# stretches the width/height ratio by these factors (see ``AugmentConfig.aspect``).
VIEW_SETS: dict[str, tuple[float, ...]] = {
    "none": (1.0,),
    "aspect": (0.7, 0.8, 1.0, 1.25, 1.4),
}


def get_views(views: str) -> tuple[float, ...]:
    if views not in VIEW_SETS:
        raise ValueError(f"unknown views {views!r}; choose from {', '.join(VIEW_SETS)}")
    return VIEW_SETS[views]


def apply_view(x: torch.Tensor, ratio: float) -> torch.Tensor:
    """Float images ``(N, C, H, W)`` with their width/height ratio multiplied by
    ``ratio`` (same size, reflection at the borders); ``ratio == 1`` returns ``x``."""
    if ratio == 1.0 or x.shape[0] == 0:
        return x
    theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = ratio**-0.5, ratio**0.5  # output -> input
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def get_augment(augment: str | AugmentConfig | dict | None) -> AugmentConfig:
    """A preset name, an AugmentConfig, a dict of its fields, or None (= ``none``)."""
    if augment is None:
        return AUGMENT_PRESETS["none"]
    if isinstance(augment, AugmentConfig):
        return augment
    if isinstance(augment, dict):
        return AugmentConfig(**augment)
    if augment not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augmentation {augment!r}; choose from {', '.join(AUGMENT_PRESETS)}")
    return AUGMENT_PRESETS[augment]


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def random_affine_matrices(n: int, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` matrices mapping output to input coordinates (``affine_grid``'s
    convention, normalised to [-1, 1])."""
    scale = torch.ones(n)
    if cfg.zoom:
        scale = scale * _uniform(n, 1 - cfg.zoom, 1 + cfg.zoom, gen)
    if cfg.crop_scale:
        scale = scale / torch.sqrt(_uniform(n, cfg.crop_scale, 1.0, gen))  # keep area fraction a -> zoom 1/sqrt(a)
    angle = torch.deg2rad(_uniform(n, -cfg.rotation, cfg.rotation, gen)) if cfg.rotation else torch.zeros(n)
    shear = _uniform(n, -cfg.shear, cfg.shear, gen) if cfg.shear else torch.zeros(n)
    tx = _uniform(n, -cfg.shift, cfg.shift, gen) * 2 if cfg.shift else torch.zeros(n)
    ty = _uniform(n, -cfg.shift, cfg.shift, gen) * 2 if cfg.shift else torch.zeros(n)
    fx = torch.where(torch.rand(n, generator=gen) < cfg.hflip, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    fy = torch.where(torch.rand(n, generator=gen) < cfg.vflip, -1.0, 1.0) if cfg.vflip else torch.ones(n)
    ratio = torch.ones(n)
    if cfg.aspect:
        log_a = float(np.log1p(cfg.aspect))
        ratio = torch.exp(_uniform(n, -log_a, log_a, gen))  # width/height multiplied by this

    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    shear_m = torch.zeros(n, 2, 2)
    shear_m[:, 0, 0] = 1
    shear_m[:, 0, 1] = -torch.sin(shear)
    shear_m[:, 1, 1] = torch.cos(shear)
    flip = torch.diag_embed(torch.stack([fx, fy], -1))
    stretch = torch.diag_embed(torch.stack([ratio.rsqrt(), ratio.sqrt()], -1))  # output -> input: divide
    # output -> input: undo zoom (divide) and stretch, then rotate/shear, then flip
    linear = flip @ rot @ shear_m @ stretch / scale.reshape(n, 1, 1)
    return torch.cat([linear, torch.stack([tx, ty], -1).unsqueeze(-1)], dim=2)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Augment float images ``(N, C, H, W)`` in [0, 1]; returns a new tensor in [0, 1].

    Areas brought in from outside the image are filled by reflection (as Keras'
    ``fill_mode="reflect"``), so no black corners teach the model a shortcut.
    """
    if cfg.is_identity or x.shape[0] == 0:
        return x
    n = x.shape[0]
    if cfg.is_geometric:
        theta = random_affine_matrices(n, cfg, gen).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.contrast:
        factor = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, gen).reshape(n, 1, 1, 1).to(x.dtype)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factor + mean
    if cfg.brightness:
        x = x + _uniform(n, -cfg.brightness, cfg.brightness, gen).reshape(n, 1, 1, 1).to(x.dtype)
    if cfg.gamma:
        log_g = np.log1p(cfg.gamma)
        gamma = torch.exp(_uniform(n, -log_g, log_g, gen)).reshape(n, 1, 1, 1).to(x.dtype)
        x = x.clamp(0.0, 1.0).pow(gamma)
    if cfg.blur:
        x = _random_blur(x, cfg.blur, cfg.blur_sigma, gen)
    if cfg.noise:
        hit = (torch.rand(n, generator=gen) < cfg.noise).to(x.dtype)
        sigma = (_uniform(n, 0.0, cfg.noise_sigma, gen) * hit).reshape(n, 1, 1, 1).to(x.dtype)
        x = x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x.clamp_(0.0, 1.0)


def _random_blur(x: torch.Tensor, p: float, max_sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Blur each chosen image with its own Gaussian (separable, reflect-padded)."""
    n, c = x.shape[:2]
    hit = torch.rand(n, generator=gen) < p
    sigma = _uniform(n, 0.3, max(max_sigma, 0.3), gen)
    if not hit.any():
        return x
    radius = int(np.ceil(3 * max(max_sigma, 0.3)))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernels = torch.exp(-0.5 * (taps[None, :] / sigma[hit, None].to(x.dtype)) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (m, taps)
    chosen = x[hit]
    m = chosen.shape[0]
    # one grouped convolution per axis: every (image, channel) plane gets its image's kernel
    planes = F.pad(chosen.reshape(1, m * c, *chosen.shape[2:]), (radius, radius, radius, radius), mode="reflect")
    weight = kernels.repeat_interleave(c, dim=0)
    planes = F.conv2d(planes, weight[:, None, None, :], groups=m * c)
    planes = F.conv2d(planes, weight[:, None, :, None], groups=m * c)
    out = x.clone()
    out[hit] = planes.reshape(m, c, *chosen.shape[2:])
    return out


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> float32 ``(N, C, H, W)`` in [0, 1]."""
    if isinstance(images, np.ndarray):
        arr = np.ascontiguousarray(images)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # cache memmaps are read-only
    else:
        t = images
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``(N, C, H, W)`` in [0, 1] -> uint8 ``(N, H, W, C)``."""
    return (x.clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def oversample_minority(
    images: np.ndarray, labels: np.ndarray, cfg: AugmentConfig, random_state: int, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Balance classes with augmented copies of the smaller ones (the seed's recipe).

    Each class below the largest gets ``largest - count`` new images, each an
    augmented copy of one of its own images drawn in turn (every original is used
    before any is used twice).  Returns only the new images and labels.
    """
    gen = torch.Generator().manual_seed(int(random_state))
    counts = np.bincount(labels)
    target = counts.max()
    new_images, new_labels = [], []
    for c, count in enumerate(counts):
        need = int(target - count)
        if need <= 0 or count == 0:
            continue
        members = np.flatnonzero(labels == c)
        order = members[torch.randperm(len(members), generator=gen).numpy()]
        picks = np.resize(order, need)
        for start in range(0, need, batch):
            chunk = picks[start : start + batch]
            new_images.append(to_uint8(augment_batch(to_float(images[np.sort(chunk)]), cfg, gen)))
            new_labels.append(np.full(len(chunk), c, dtype=labels.dtype))
    if not new_images:
        return images[:0], labels[:0]
    return np.concatenate(new_images), np.concatenate(new_labels)
