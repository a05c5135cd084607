"""Parameter constraints, declared once per estimator and checked once, at ``fit``.

Estimators list their parameters' allowed values in a class attribute
``_parameter_constraints`` (scikit-learn's own format and machinery: types,
``None``, :class:`Interval`, :class:`Options`, ``"boolean"``...) and call
:func:`validate_params` at the start of ``fit``.  ``__init__`` only stores.
"""

from __future__ import annotations

from numbers import Integral, Real

# scikit-learn's constraint machinery (public in spirit: every sklearn estimator uses
# it); imported in this one place so a change of its home touches one line.
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    validate_parameter_constraints,
)


def validate_params(estimator) -> None:
    """Check ``estimator.get_params(deep=False)`` against its ``_parameter_constraints``.

    Raises :class:`InvalidParameterError` (a ValueError and a TypeError) naming the
    parameter, what it may be, and what it got.
    """
    validate_parameter_constraints(
        type(estimator)._parameter_constraints, estimator.get_params(deep=False), caller_name=type(estimator).__name__
    )


__all__ = [
    "HasMethods",
    "Integral",
    "Interval",
    "InvalidParameterError",
    "Options",
    "Real",
    "StrOptions",
    "validate_params",
]
