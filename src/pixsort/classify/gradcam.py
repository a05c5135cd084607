"""Grad-CAM (Selvaraju et al. 2017) for the convolutional classifiers.

The heat map of an image is ``ReLU(sum_k alpha_k A_k)`` where ``A_k`` are the
channels of the network's last convolutional layer (``ClassifierNet.gradcam_layer``)
and ``alpha_k`` the spatial mean of the gradient of the explained class score.
For a one-logit binary model the score is the logit for the predicted class
(the logit itself for the positive class, its negative for the other).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pixsort.classify.augment import to_float
from pixsort.classify.networks import ClassifierNet


def grad_cam(
    net: ClassifierNet, images: np.ndarray, classes: np.ndarray | None = None, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Heat maps for uint8 images ``(N, H, W, C)``.

    Parameters
    ----------
    classes : int array (N,), optional
        Class to explain per image (default: the arg-max / thresholded-at-0 class).

    Returns
    -------
    maps : float32 (N, H, W) in [0, 1], at the input images' size
    explained : int64 (N,) the class each map explains
    """
    layer = net.gradcam_layer
    if layer is None:
        raise ValueError(f"{net.spec['model']} has no convolutional layer to explain")
    net.eval()
    maps, explained = [], []
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        output.retain_grad()
        store["act"] = output

    handle = layer.register_forward_hook(hook)
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start : start + batch_size]).to(net.device)
            x.requires_grad_(True)  # grads flow through frozen parts
            with torch.enable_grad():
                logits = net(x).float()
                if logits.shape[1] == 1:
                    chosen = (logits[:, 0] >= 0).long()
                    if classes is not None:
                        chosen = torch.as_tensor(classes[start : start + len(x)], dtype=torch.long, device=x.device)
                    score = torch.where(chosen == 1, logits[:, 0], -logits[:, 0])
                else:
                    chosen = logits.argmax(1)
                    if classes is not None:
                        chosen = torch.as_tensor(classes[start : start + len(x)], dtype=torch.long, device=x.device)
                    score = logits.gather(1, chosen[:, None])[:, 0]
                score.sum().backward()
            act, grad = store["act"].detach().float().cpu(), store["act"].grad.float().cpu()
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * act).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
            flat = cam.reshape(len(cam), -1)
            lo, hi = flat.min(1).values, flat.max(1).values
            cam = (cam - lo[:, None, None]) / (hi - lo).clamp_min(1e-8)[:, None, None]
            maps.append(cam.numpy().astype(np.float32))
            explained.append(chosen.cpu().numpy())
    finally:
        handle.remove()
    return np.concatenate(maps), np.concatenate(explained).astype(np.int64)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (jet colours) over a uint8 image; returns uint8 RGB."""
    from matplotlib import colormaps

    base = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    blended = (1 - alpha) * base.astype(np.float32) / 255.0 + alpha * colours
    return np.clip(blended * 255.0, 0, 255).round().astype(np.uint8)
