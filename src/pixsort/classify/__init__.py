"""Supervised image classification: models, training, evaluation, thresholds."""
