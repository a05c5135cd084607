"""Supervised image classification: models, training, evaluation, thresholds.

* :mod:`~pixsort.classify.estimator` - :class:`ImageClassifier` (fit / predict /
  predict_proba / score / save / load), the serving contract;
* :mod:`~pixsort.classify.models` - architectures by name (``seed-cnn``,
  ``seed-cnn-dropout``, ``probe:`` / ``mlp:`` / ``partial:`` / ``finetune:<backbone>``,
  ``timm:<name>``) and their training recipes;
* :mod:`~pixsort.classify.engine` - the training loop (cached frozen features,
  class balancing, schedules, early stopping, resumable checkpoints);
* :mod:`~pixsort.classify.augment` - batched on-the-fly augmentation, oversampling;
* :mod:`~pixsort.classify.metrics`, :mod:`~pixsort.classify.threshold` - metrics,
  calibration, decision thresholds;
* :mod:`~pixsort.classify.train` - source -> model folder + report, evaluate, predict;
* :mod:`~pixsort.classify.evaluate`, :mod:`~pixsort.classify.plots`,
  :mod:`~pixsort.classify.gradcam` - evaluation outputs.

Submodules are imported on use so that ``import pixsort.classify`` stays cheap.
"""
