"""The errors every layer raises: one name per idea."""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class NotFittedError(_SklearnNotFittedError):
    """An estimator was used before ``fit`` (or ``load``).

    A subclass of scikit-learn's, so ``check_is_fitted`` callers and sklearn tools
    treat pixsort's estimators like their own.
    """


class ModelFileError(Exception):
    """A model folder that is missing, not pixsort's, of another kind, or from an unknown version."""


class OutputPathError(ValueError):
    """An output file that cannot be written (a folder, a read-only place); found before any work."""


def check_fitted(estimator, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has the fitted ``attribute``."""
    if not hasattr(estimator, attribute):
        name = type(estimator).__name__
        raise NotFittedError(f"this {name} is not fitted yet: call fit() or {name}.load() first")


__all__ = ["ModelFileError", "NotFittedError", "OutputPathError", "check_fitted"]
