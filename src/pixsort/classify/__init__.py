"""The classify stage: image classifiers, their training, evaluation and thresholds.

* :mod:`~pixsort.classify.estimator` - :class:`ImageClassifier` (fit / predict /
  predict_proba / score / save / load), the serving contract;
* :mod:`~pixsort.classify.networks` - architectures by name (``seed-cnn``,
  ``seed-cnn-dropout``, ``probe:`` / ``mlp:`` / ``partial:`` / ``finetune:<backbone>``,
  ``timm:<name>``, on the feature-name grammar of :mod:`pixsort.features.names`)
  and their training recipes;
* :mod:`~pixsort.classify.training` - the training loop (cached frozen features,
  class balancing, schedules, early stopping, resumable checkpoints);
* :mod:`~pixsort.classify.lr_finder` - the learning-rate range test behind ``lr="auto"``;
* :mod:`~pixsort.classify.augment` - batched on-the-fly augmentation, oversampling;
* :mod:`~pixsort.classify.metrics`, :mod:`~pixsort.classify.threshold` - metrics
  (per class, most-confused pairs), calibration, decision thresholds;
* :mod:`~pixsort.classify.evaluation`, :mod:`~pixsort.classify.gradcam` - evaluating
  a model: predictions, the top losses and where the network looked.

Writing the outputs is :mod:`pixsort.report.classification`'s job; running a
training from a data source is :mod:`pixsort.workflows.classification`'s.
Submodules are imported on use so that ``import pixsort.classify`` stays cheap.
"""
