"""Temperature scaling: one scalar ``T > 0`` that divides a model's logits so that its
probabilities match how often it is right (Guo et al. 2017, "On calibration of modern
neural networks").

For a two-class model the network has one logit ``z`` and ``p = sigmoid(z / T)``; for
K classes, ``p = softmax(z / T)``.  ``T`` minimises the mean negative log-likelihood of
labelled logits, found by a bounded one-dimensional search over ``log T`` (the NLL is
smooth and, in ``log T``, has one minimum for the data a model is calibrated on).  ``T``
changes no ranking: the arg-max, the ROC and PR curves and their AUCs stay as they
were; probabilities move towards 0.5 (``T > 1``, an over-confident model) or away
from it (``T < 1``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_expit, logsumexp

TEMPERATURE_BOUNDS = (0.05, 20.0)


@dataclass(frozen=True)
class TemperatureFit:
    """The fitted temperature and the mean NLL before (``T = 1``) and after."""

    temperature: float
    nll_before: float
    nll_after: float
    n: int
    method: str = "temperature scaling: T > 0 minimising the mean NLL of logits / T (bounded search over log T)"

    def to_dict(self) -> dict:
        return asdict(self)


def temperature_nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of integer labels ``y`` under ``logits / temperature``
    (``(n, 1)``: the positive class's logit; ``(n, K)``: softmax)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    y = np.asarray(y, dtype=np.int64).ravel()
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"logits must be (n={len(y)}, 1 or K), got {z.shape}")
    if z.shape[1] == 1:
        s = z[:, 0]
        return float(-np.mean(np.where(y == 1, log_expit(s), log_expit(-s))))
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def fit_temperature(
    logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> TemperatureFit:
    """The temperature minimising :func:`temperature_nll` on labelled ``logits``."""
    y = np.asarray(y, dtype=np.int64).ravel()
    logits = np.asarray(logits, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("fitting a temperature needs labelled images")
    n_outputs = logits.shape[1] if logits.ndim == 2 else 0
    if (y < 0).any() or y.max() >= max(n_outputs, 2):
        raise ValueError("labels must be class indices of the model")
    result = minimize_scalar(
        lambda log_t: temperature_nll(logits, y, np.exp(log_t)),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-5},
    )
    t = float(np.exp(result.x))
    return TemperatureFit(t, temperature_nll(logits, y, 1.0), temperature_nll(logits, y, t), int(len(y)))


__all__ = ["TEMPERATURE_BOUNDS", "TemperatureFit", "fit_temperature", "temperature_nll"]
