"""A convolutional autoencoder trained on the images themselves; its latent vectors
are the features (recipe: autoencoder -> latent -> PCA -> t-SNE/k-means).

It needs no pretrained weights, so it is the extractor for image kinds far from
ImageNet, and the baseline the pretrained extractors are measured against.

>>> ae = AutoencoderExtractor(latent_dim=64, epochs=20).fit(images)    # uint8 (n, H, W, C)
>>> Z = ae.transform(images)                                           # (n, 64) float32
>>> ae.history_[-1]                                                    # {"epoch": 20, "loss": ...}
>>> originals, recon = ae.reconstruct(images[:8])                      # for the figure
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pixsort.base.errors import check_fitted
from pixsort.base.images import check_images
from pixsort.base.progress import Progress
from pixsort.base.runtime import tune_cpu
from pixsort.features.base import ImageExtractor

EvalCallback = Callable[[int, np.ndarray], dict]


class ConvAutoencoder(nn.Module):
    """Encoder: ``len(channels)`` stride-2 conv blocks -> linear latent; the decoder mirrors it.

    Input (N, C, S, S) in [0, 1] with S divisible by ``2 ** len(channels)``; the
    decoder ends in a sigmoid so reconstructions are in [0, 1] too.
    """

    def __init__(self, in_channels: int, image_size: int, latent_dim: int, channels: tuple[int, ...]):
        super().__init__()
        layers, prev = [], in_channels
        for ch in channels:
            layers += [
                nn.Conv2d(prev, ch, 3, stride=2, padding=1),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
                nn.Conv2d(ch, ch, 3, padding=1),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
            ]
            prev = ch
        self.encoder = nn.Sequential(*layers)
        self.grid = image_size // 2 ** len(channels)
        flat = prev * self.grid * self.grid
        self.to_latent = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        dec, rev = [], list(channels[::-1]) + [channels[0]]
        for a, b in zip(rev[:-1], rev[1:]):
            dec += [
                nn.ConvTranspose2d(a, b, 4, stride=2, padding=1),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
                nn.Conv2d(b, b, 3, padding=1),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
            ]
        dec += [nn.Conv2d(channels[0], in_channels, 3, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)
        self.top_channels = prev

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder(x).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(-1, self.top_channels, self.grid, self.grid)
        return self.decoder(F.relu(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.decode(z)


class AutoencoderExtractor(ImageExtractor):
    """Features from a convolutional autoencoder trained on the given images.

    Parameters
    ----------
    latent_dim : int, default 64
        Width of the latent vector (the features).
    image_size : int, default 32
        Images are resized to ``image_size`` squared before encoding; must be
        divisible by ``2 ** len(channels)``.
    channels : tuple of int, default (32, 64, 128)
        Width of each stride-2 encoder stage.
    epochs : int, default 20
    batch_size : int, default 128
    learning_rate : float, default 2e-3
        Peak Adam learning rate of a one-cycle schedule (warm-up, then cosine decay).
    flip : bool, default True
        Random horizontal flips while training (cheap augmentation).
    random_state : int, default 0
    progress : bool, default True
        A progress bar over epochs.

    Attributes
    ----------
    model_ : ConvAutoencoder
    in_channels_ : int
    history_ : list of dict
        One entry per epoch: ``epoch``, ``loss`` (mean training MSE), ``seconds``,
        plus whatever ``eval_callback`` returned at that epoch (e.g. accuracy).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        image_size: int = 32,
        channels: tuple[int, ...] = (32, 64, 128),
        epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 2e-3,
        flip: bool = True,
        random_state: int = 0,
        progress: bool = True,
    ):
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.channels = tuple(channels)
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.flip = flip
        self.random_state = random_state
        self.progress = progress

    def _validate_params(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive widths, got {self.channels}")
        step = 2 ** len(self.channels)
        if self.image_size < step or self.image_size % step:
            raise ValueError(f"image_size must be a multiple of {step} (2 ** len(channels)), got {self.image_size}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")

    # -- identity ------------------------------------------------------------------

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        return tags

    @property
    def extractor_id(self) -> str:
        """Identifies the fitted weights (for embedding caches)."""
        self._check_fitted()
        params = {k: v for k, v in self.to_config()["params"].items() if k != "progress"}
        h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
        for name, t in sorted(self.model_.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return "autoencoder-" + h.hexdigest()[:16]

    @property
    def feature_dim(self) -> int:
        return self.latent_dim

    # -- training ------------------------------------------------------------------

    def _build(self, in_channels: int) -> None:
        torch.manual_seed(self.random_state)
        self.in_channels_ = in_channels
        self.model_ = ConvAutoencoder(in_channels, self.image_size, self.latent_dim, self.channels)

    def _to_tensor(self, images: np.ndarray) -> torch.Tensor:
        images = np.ascontiguousarray(images)
        if not images.flags.writeable:  # a memory-mapped cache: torch wants a tensor it may write
            images = images.copy()
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bilinear",
                antialias=x.shape[-1] > self.image_size,
                align_corners=False,
            )
        return x

    def fit(
        self, images: np.ndarray, y=None, eval_callback: EvalCallback | None = None, eval_every: int = 5
    ) -> AutoencoderExtractor:
        """Train on uint8 images (n, H, W, C).

        ``eval_callback(epoch, latents)`` is called every ``eval_every`` epochs and
        after the last one with the current latent vectors of all images; the dict
        it returns (e.g. ``{"accuracy": 0.7}``) is merged into that epoch's history.
        """
        self._validate_params()
        images = check_images(images)
        tune_cpu()
        self._build(images.shape[-1])
        data = self._to_tensor(images)  # resized once: (n, C, S, S) float in [0, 1]
        gen = torch.Generator().manual_seed(self.random_state)
        opt = torch.optim.Adam(self.model_.parameters(), lr=self.learning_rate)
        steps_per_epoch = math.ceil(len(data) / self.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.learning_rate, total_steps=self.epochs * steps_per_epoch, pct_start=0.15
        )
        self.history_: list[dict] = []
        with Progress(self.progress) as bar:
            task = bar.add_task("Training autoencoder", self.epochs)
            for epoch in range(1, self.epochs + 1):
                entry = self._train_epoch(epoch, data, opt, sched, gen)
                if eval_callback is not None and (epoch % eval_every == 0 or epoch == self.epochs):
                    entry.update(eval_callback(epoch, self._encode_tensor(data)))
                self.history_.append(entry)
                info = "  ".join(
                    f"{k} {v:.4f}" for k, v in entry.items() if k not in ("epoch", "seconds") and isinstance(v, float)
                )
                bar.advance(task, 1, info=info)
        self.model_.eval()
        return self

    def _train_epoch(self, epoch: int, data: torch.Tensor, opt, sched, gen: torch.Generator) -> dict:
        """One pass over the images in a seeded order; the epoch's history entry."""
        self.model_.train()
        start, total, seen = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(data), generator=gen)
        for i in range(0, len(data), self.batch_size):
            x = data[order[i : i + self.batch_size]]
            if self.flip:
                flip = torch.rand(len(x), generator=gen) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            _, recon = self.model_(x)
            loss = F.mse_loss(recon, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
        return {"epoch": epoch, "loss": total / seen, "seconds": time.perf_counter() - start}

    # -- inference -----------------------------------------------------------------

    @torch.inference_mode()
    def _encode_tensor(self, data: torch.Tensor) -> np.ndarray:
        self.model_.eval()
        out = [self.model_.encode(data[i : i + 512]) for i in range(0, len(data), 512)]
        return torch.cat(out).numpy().astype(np.float32)

    def transform(self, images, keys=None, cache_dir=None) -> np.ndarray:
        """Latent vectors (n, latent_dim) float32 of uint8 images (n, H, W, C)."""
        self._check_fitted()
        return super().transform(images, keys=keys, cache_dir=cache_dir)

    def _extract(self, images: np.ndarray) -> np.ndarray:
        images = _match_channels(images, self.in_channels_)
        out = [self._encode_tensor(self._to_tensor(images[i : i + 1024])) for i in range(0, len(images), 1024)]
        return np.concatenate(out) if out else np.zeros((0, self.latent_dim), np.float32)

    def fit_transform(self, images, y=None, keys=None, cache_dir=None, **fit_kwargs) -> np.ndarray:
        return self.fit(images, y, **fit_kwargs).transform(images, keys=keys, cache_dir=cache_dir)

    @torch.inference_mode()
    def reconstruct(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(originals, reconstructions), both uint8 (n, S, S, C) at ``image_size``."""
        self._check_fitted()
        x = self._to_tensor(_match_channels(check_images(images), self.in_channels_))
        self.model_.eval()
        _, recon = self.model_(x)
        to_u8 = lambda t: t.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
        return to_u8(x), to_u8(recon)

    # -- persistence ---------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._check_fitted()
        return {k: v.detach().clone() for k, v in self.model_.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> AutoencoderExtractor:
        """Load weights saved by :meth:`state_dict` (the input channels are read from them)."""
        self._validate_params()
        self._build(int(state["encoder.0.weight"].shape[1]))
        self.model_.load_state_dict(state)
        self.model_.eval()
        return self

    def _check_fitted(self) -> None:
        check_fitted(self, "model_")


def _match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB so images of either kind can be encoded by a model trained on one."""
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]


__all__ = ["AutoencoderExtractor", "ConvAutoencoder"]
