"""The one name grammar for features and the models built on them.

A feature name is one of:

* a registered backbone (``efficientnet_lite0``, see
  :func:`pixsort.features.backbones.list_backbones`);
* ``timm:<model_name>``, any timm model where timm imports;
* two or more of those joined by ``+`` (``efficientnet_lite0+efficientnet_lite2``):
  their embeddings side by side (:class:`pixsort.features.fused.FusedExtractor`);
* ``autoencoder`` (trained on the images themselves) or ``pixels`` (raw pixels).

Classifier names (:func:`pixsort.classify.networks.parse_model_name`) build on it
as ``<mode>:<backbone>``: a mode prefix, a colon, a backbone name.
"""

from __future__ import annotations

from dataclasses import dataclass

TIMM_PREFIX = "timm:"
SPECIAL_FEATURES = ("autoencoder", "pixels")
FUSION_SEPARATOR = "+"


def split_prefix(name: str) -> tuple[str, str]:
    """``"probe:efficientnet_lite0"`` -> ``("probe", "efficientnet_lite0")``;
    ``"timm:resnet18"`` -> ``("timm", "resnet18")``; ``"pixels"`` -> ``("", "pixels")``."""
    prefix, sep, rest = name.partition(":")
    return (prefix, rest) if sep else ("", name)


def is_timm(name: str) -> bool:
    return isinstance(name, str) and name.startswith(TIMM_PREFIX)


@dataclass(frozen=True)
class FeatureName:
    """A parsed feature name: ``kind`` is ``backbone``, ``timm``, ``fused``, ``autoencoder``
    or ``pixels``; ``parts`` are the backbone names a fused name joins (else empty)."""

    name: str
    kind: str
    parts: tuple[str, ...] = ()

    @property
    def is_pretrained(self) -> bool:
        return self.kind in ("backbone", "timm", "fused")


def parse_feature_name(name: str) -> FeatureName:
    """Say what kind a feature name is, from its spelling alone (no registry lookup:
    :func:`pixsort.features.extract.check_feature_name` also checks that a backbone
    name is registered)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"features must be a name, got {name!r}")
    if name in SPECIAL_FEATURES:
        return FeatureName(name, name)
    if FUSION_SEPARATOR in name:
        parts = tuple(name.split(FUSION_SEPARATOR))
        for part in parts:
            if not part or part in SPECIAL_FEATURES or FUSION_SEPARATOR in part:
                raise ValueError(f"{name!r}: a fused name joins pretrained backbone names with '+', got part {part!r}")
            parse_feature_name(part)
        if len(set(parts)) != len(parts):
            raise ValueError(f"{name!r} names a backbone twice")
        return FeatureName(name, "fused", parts)
    if is_timm(name):
        if not name[len(TIMM_PREFIX) :]:
            raise ValueError(f"{name!r} names no timm model; write {TIMM_PREFIX}<model_name>")
        return FeatureName(name, "timm")
    return FeatureName(name, "backbone")


__all__ = [
    "FUSION_SEPARATOR",
    "SPECIAL_FEATURES",
    "TIMM_PREFIX",
    "FeatureName",
    "is_timm",
    "parse_feature_name",
    "split_prefix",
]
