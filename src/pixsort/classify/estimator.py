"""``ImageClassifier``: a scikit-learn style estimator over uint8 image arrays.

>>> clf = ImageClassifier("probe:efficientnet_lite0", target_sensitivity=0.95)
>>> clf.fit(X_train, y_train, X_val=X_val, y_val=y_val, classes=["NORMAL", "PNEUMONIA"])
>>> clf.predict_proba(X_new)          # (n, 2)
>>> clf.predict(X_new)                # class indices, the threshold applied
>>> clf.save("models/xray"); ImageClassifier.load("models/xray")

Images are ``(n, H, W, C)`` uint8 arrays decoded with :attr:`decode_settings`
(``pixsort.data.load_images`` / ``decode_image``); the network resizes whatever it
is given to its own input size, so other sizes work too.

A saved model is a folder with ``weights.safetensors`` and ``model.json`` (class
names, decode and preprocessing settings, architecture, threshold, temperature,
validation metrics, training history, provenance); nothing is pickled.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from pixsort.base.errors import ModelFileError, check_fitted
from pixsort.base.images import check_images
from pixsort.base.modelfile import WEIGHTS_FILE, model_problem, read_model_folder, write_model_folder, write_model_meta
from pixsort.base.params import Integral, Interval, Real, StrOptions, validate_params
from pixsort.base.runtime import DEVICES, PRECISIONS, select_device, tune_cpu
from pixsort.classify.augment import VIEW_SETS, get_augment, get_views, oversample_minority
from pixsort.classify.metrics import BOOTSTRAP_RESAMPLES, MONITORS, classification_metrics, predict_from_proba
from pixsort.classify.networks import (
    DEFAULT_MODEL,
    RECIPES,
    SEED_MODELS,
    build_network,
    make_spec,
    n_outputs_for,
    parse_model_name,
)
from pixsort.classify.threshold import choose_threshold
from pixsort.classify.training import (
    BALANCE_MODES,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    fit_network,
    logits_to_proba,
    predict_logits,
)
from pixsort.data.decode import DecodeSettings
from pixsort.data.split import holdout

# parameters of a run, not of the model: never saved with it
RUN_PARAMS = ("weights_path", "checkpoint_dir", "resume", "progress", "device")


class ImageClassifier(ClassifierMixin, BaseEstimator):
    """Train and apply an image classifier.

    Parameters
    ----------
    model : str, default "partial:efficientnet_lite0"
        A name from :func:`pixsort.classify.networks.list_models`: ``seed-cnn``,
        ``seed-cnn-dropout``, ``probe:<backbone>``, ``mlp:<backbone>``,
        ``partial:<backbone>``, ``finetune:<backbone>``, ``timm:<name>``.
    epochs, batch_size, lr, weight_decay, optimizer, schedule, augment, balance, label_smoothing, mixup, patience :
        Training settings; ``None`` takes the model's recipe (``RECIPES``).
        ``label_smoothing`` moves each target that share towards uniform;
        ``mixup`` is the Beta alpha of mixup (0: off).
        ``lr="auto"`` chooses the learning rate by a range test before training
        (:mod:`pixsort.classify.lr_finder`; the curve and the choice in ``lr_finder_``).
        ``balance`` is ``none`` | ``weights`` (loss weights) | ``sampler`` (balanced
        sampling) | ``oversample`` (augmented copies of the minority classes, the
        published recipe).  ``augment`` is a preset of ``pixsort.classify.augment``.
    monitor : str
        Validation metric for early stopping and the best checkpoint.
    validation_fraction : float
        Share of the training images held out (stratified, seeded) when ``fit`` gets
        no validation set.
    image_size : int, optional
        Network input size (default: the model's, e.g. 128 for the seed CNN).
    train_blocks : int, optional
        For ``partial:``, how many last backbone stages are fine-tuned.
    target_sensitivity : float, "auto" or None, default "auto"
        Choose the binary threshold as the highest one with at least this
        sensitivity on validation; ``"auto"`` takes the recipe's (0.95 for
        ``partial:``, measured on X-rays of other patients); None: ``threshold``
        says how.
    threshold : "youden" | "fixed"
        ``youden`` maximises sensitivity + specificity - 1 on validation.
    tta : bool
        Average the prediction of each image with its mirror image.
    views : {"none", "aspect"} or None
        Fixed views of every image (``aspect``: the width/height ratio stretched by
        0.7 ... 1.4): for models with a frozen part and no augmentation, the trainable
        part learns from the cached features of every view, and predictions average
        over the views.  None takes the recipe's.
    precision : "auto" | "fp32" | "bf16"
        ``auto``: bf16 autocast where measured faster on this CPU (frozen backbones,
        the seed CNNs) if it has native bf16, fp32 elsewhere.
    channels_last : bool
        NHWC memory layout (faster for convolutions on CPU).
    max_minutes : float, optional
        Stop training before this wall-clock budget is exceeded (best epoch kept).
    random_state : int
    pretrained : bool
        Load the backbone's pretrained weights (False: random, for tests).
    weights_path : str, optional
        A local weights file for the backbone instead of the packaged one.
    checkpoint_dir : path, optional
        Where per-epoch checkpoints go; with ``resume=True`` an interrupted run
        continues from the last one.
    progress : bool
        Progress bars and per-epoch lines on stderr.
    device : "auto" | "cpu" | "cuda" | "mps"
        Where training and inference run (:func:`pixsort.base.runtime.select_device`):
        ``auto`` takes a CUDA GPU, else an Apple GPU, else the CPU.  A run setting,
        not saved with the model.

    Attributes
    ----------
    classes_ : list of str
    threshold_ : float or None
        Decision threshold on ``classes_[1]`` (binary), else None.
    threshold_info_ : dict
    validation_metrics_ : dict
        Metrics on the validation set at ``threshold_`` (with bootstrap 95% intervals).
    temperature_ : float
        Logits are divided by it before the sigmoid / softmax (1.0 until
        ``pixsort calibrate`` fits one); ``calibration_`` says where and how.
    provenance_ : dict or None
        What a workflow recorded about the training data (saved, for the model card).
    history_ : list of dict
        Per-epoch losses and validation metrics.
    lr_finder_ : dict or None
        With ``lr="auto"``: the range test's ``lrs``, ``losses``, ``smoothed``, ``chosen``
        (the learning rate trained with, also in ``train_config_``), ``suggestions``,
        ``rule``; else None.
    network_ : ClassifierNet
    spec_ : dict
        The architecture, as saved.
    train_config_ : dict
    decode_settings : DecodeSettings
        How to decode an image for this model.
    fit_seconds_ : float
    n_parameters_ : int
    """

    _parameter_constraints: dict = {
        "model": [str],
        "epochs": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"}), None],
        "weight_decay": [Interval(Real, 0, None, closed="left"), None],
        "optimizer": [StrOptions(set(OPTIMIZERS)), None],
        "schedule": [StrOptions(set(SCHEDULES)), None],
        "augment": [str, None],
        "balance": [StrOptions(set(BALANCE_MODES)), None],
        "label_smoothing": [Interval(Real, 0, 1, closed="left"), None],
        "mixup": [Interval(Real, 0, None, closed="left"), None],
        "patience": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "monitor": [StrOptions(set(MONITORS))],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "image_size": [Interval(Integral, 8, 1024, closed="both"), None],
        "train_blocks": [Interval(Integral, 1, None, closed="left"), None],
        "target_sensitivity": [Interval(Real, 0, 1, closed="right"), StrOptions({"auto"}), None],
        "threshold": [StrOptions({"youden", "fixed"})],
        "tta": ["boolean"],
        "views": [StrOptions(set(VIEW_SETS)), None],
        "precision": [StrOptions(set(PRECISIONS))],
        "channels_last": ["boolean"],
        "max_minutes": [Interval(Real, 0, None, closed="neither"), None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "pretrained": ["boolean"],
        "weights_path": [str, os.PathLike, None],
        "checkpoint_dir": [str, os.PathLike, None],
        "resume": ["boolean"],
        "progress": ["boolean"],
        "device": [StrOptions(set(DEVICES))],
    }

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | str | None = None,
        weight_decay: float | None = None,
        optimizer: str | None = None,
        schedule: str | None = None,
        augment: str | None = None,
        balance: str | None = None,
        label_smoothing: float | None = None,
        mixup: float | None = None,
        patience: int | None | str = "auto",
        monitor: str = "roc_auc",
        validation_fraction: float = 0.15,
        image_size: int | None = None,
        train_blocks: int | None = None,
        target_sensitivity: float | str | None = "auto",
        threshold: str = "youden",
        tta: bool = False,
        views: str | None = None,
        precision: str = "auto",
        channels_last: bool = True,
        max_minutes: float | None = None,
        random_state: int = 0,
        pretrained: bool = True,
        weights_path: str | os.PathLike | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
        device: str = "auto",
    ):
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.schedule = schedule
        self.augment = augment
        self.balance = balance
        self.label_smoothing = label_smoothing
        self.mixup = mixup
        self.patience = patience
        self.monitor = monitor
        self.validation_fraction = validation_fraction
        self.image_size = image_size
        self.train_blocks = train_blocks
        self.target_sensitivity = target_sensitivity
        self.threshold = threshold
        self.tta = tta
        self.views = views
        self.precision = precision
        self.channels_last = channels_last
        self.max_minutes = max_minutes
        self.random_state = random_state
        self.pretrained = pretrained
        self.weights_path = weights_path
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.device = device

    # ------------------------------------------------------------------ parameters

    def check_params(self) -> TrainConfig:
        """Validate every parameter once (the constraints table, the model name, the
        augmentation preset, the merged recipe) and return the training settings.
        ``fit`` calls it first; call it to fail early (e.g. before decoding a source)."""
        validate_params(self)
        parse_model_name(self.model)
        get_augment(self.augment)  # raises for an unknown preset
        select_device(self.device)  # raises for a device this machine lacks
        return self._train_config()

    @property
    def _name(self):
        return parse_model_name(self.model)

    def model_params(self) -> dict:
        """The parameters that define the model (saved with it): all but ``RUN_PARAMS``."""
        return {k: v for k, v in self.get_params(deep=False).items() if k not in RUN_PARAMS}

    @property
    def recipe(self):
        return RECIPES[self._name.family]

    def default_image_size(self) -> int:
        """The input size the network is built for (``image_size`` or the recipe's)."""
        if self.image_size is not None:
            return int(self.image_size)
        if self._name.backbone is not None:
            return int(make_spec(self._name, 1)["input_size"][0])
        return self.recipe.image_size

    def plan_decode_settings(self, native_size: tuple[int, int] | None = None) -> DecodeSettings:
        """How training images should be decoded for this model.

        Images smaller than the network input (PneumoniaMNIST's 28x28) are kept at
        their native size: the network upsamples them itself, and the cache stays small.
        """
        size = self.default_image_size()
        if native_size is not None and max(native_size) < size:
            return DecodeSettings(size=tuple(int(s) for s in native_size), channels="RGB", resize="squash")
        return DecodeSettings(size=size, channels="RGB", resize="squash")

    def _target_sensitivity(self) -> float | None:
        """The threshold rule's target: the parameter, or the recipe's for ``"auto"``."""
        return self.recipe.target_sensitivity if self.target_sensitivity == "auto" else self.target_sensitivity

    def _train_config(self) -> TrainConfig:
        """The model's recipe merged with the parameters that override it."""
        r = self.recipe
        patience = r.patience if self.patience == "auto" else self.patience
        cfg = TrainConfig(
            epochs=int(self.epochs or r.epochs),
            batch_size=int(self.batch_size or r.batch_size),
            lr=float(r.lr if isinstance(self.lr, str) else (self.lr or r.lr)),  # "auto": the recipe's until found
            optimizer=self.optimizer or r.optimizer,
            weight_decay=float(r.weight_decay if self.weight_decay is None else self.weight_decay),
            schedule=self.schedule or r.schedule,
            augment=get_augment(self.augment or r.augment),
            balance=self.balance or r.balance,
            label_smoothing=float(r.label_smoothing if self.label_smoothing is None else self.label_smoothing),
            mixup=float(r.mixup if self.mixup is None else self.mixup),
            patience=patience,
            monitor=self.monitor,
            random_state=int(self.random_state),
            views=self.views or r.views,
            precision=self.precision,
            channels_last=bool(self.channels_last),
            max_seconds=None if self.max_minutes is None else float(self.max_minutes) * 60.0,
        )
        return cfg

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        X,
        y,
        X_val=None,
        y_val=None,
        *,
        classes: list[str] | None = None,
        decode_settings: DecodeSettings | None = None,
    ) -> ImageClassifier:
        """Train on uint8 images.

        Parameters
        ----------
        X : uint8 array (n, H, W, C), C = 1 or 3
        y : array (n,) of class indices into ``classes``, or of class names
        X_val, y_val : a validation set; if omitted, ``validation_fraction`` of X is
            held out (stratified by class, seeded)
        classes : class names for integer labels (default ``"0"``, ``"1"``, ...)
        decode_settings : how X was decoded (recorded for serving); default: X's size,
            RGB, squash
        """
        cfg = self.check_params()
        tune_cpu()
        started = time.perf_counter()
        X = check_images(X, "X", allow_empty=False)
        y_idx, self.classes_ = _encode_labels(y, classes)
        if len(y_idx) != len(X):
            raise ValueError(f"X has {len(X)} images but y has {len(y_idx)} labels")
        if X_val is None:
            if y_val is not None:
                raise ValueError("y_val given without X_val")
            train_pos, val_pos = holdout(y_idx, self.validation_fraction, self.random_state)
            X_train, y_train, X_val, y_val_idx = X[train_pos], y_idx[train_pos], X[val_pos], y_idx[val_pos]
        else:
            X_val = check_images(X_val, "X_val", allow_empty=False)
            y_val_idx, _ = _encode_labels(y_val, self.classes_)
            X_train, y_train = X, y_idx
        n_classes = len(self.classes_)
        if len(np.unique(y_train)) < 2:
            raise ValueError("training needs at least two classes among the training labels")

        if cfg.balance == "oversample":
            # the seed's recipe: static augmented copies of the minority class, then no weighting
            extra_x, extra_y = oversample_minority(
                X_train, y_train, get_augment("seed"), random_state=self.random_state
            )
            X_train = np.concatenate([np.asarray(X_train), extra_x])
            y_train = np.concatenate([y_train, extra_y])

        hw = X.shape[1:3]
        self.decode_settings_ = decode_settings or DecodeSettings(
            size=(int(hw[0]), int(hw[1])), channels="RGB", resize="squash"
        )
        mean = std = None
        if self._name.family in SEED_MODELS:
            mean, std = _channel_stats(X_train)  # the seed "standardised" with the training set's statistics
        self.spec_ = make_spec(
            self._name,
            n_outputs_for(n_classes),
            self.image_size or (self.recipe.image_size if self._name.backbone is None else None),
            mean=mean,
            std=std,
            train_blocks=self.train_blocks,
            weights_path=self.weights_path,
        )
        torch.manual_seed(self.random_state)
        net = build_network(self.spec_, pretrained=self.pretrained)
        result = fit_network(
            net,
            X_train,
            y_train,
            X_val,
            y_val_idx,
            self.classes_,
            cfg,
            checkpoint_dir=self.checkpoint_dir,
            resume=self.resume,
            progress=self.progress,
            find_lr=isinstance(self.lr, str),
            device=select_device(self.device),
        )
        self.network_ = net
        self.history_ = result.history
        self.lr_finder_ = result.lr_finder
        self.train_config_ = cfg.to_dict() | ({"lr": result.lr_finder["chosen"]} if result.lr_finder else {})
        self.training_ = {
            "best_epoch": result.best_epoch,
            "best_score": result.best_score,
            "monitor": cfg.monitor,
            "stopped": result.stopped,
            "cached_features": result.cached_features,
            "features_runtime": result.features_runtime,
            "resumed_from_epoch": result.resumed_from_epoch,
            "n_train": int(len(y_train)),
            "n_val": int(len(y_val_idx)),
            "train_counts": np.bincount(y_train, minlength=n_classes).tolist(),
            "val_counts": np.bincount(y_val_idx, minlength=n_classes).tolist(),
        }
        self.temperature_, self.calibration_, self.provenance_ = 1.0, None, None
        # threshold on the validation probabilities exactly as predict_proba computes them
        val_proba = result.val_proba if (result.val_proba is not None and not self.tta) else self.predict_proba(X_val)
        self.val_proba_, self.val_labels_ = val_proba, y_val_idx
        self._set_threshold(y_val_idx, val_proba)
        self.fit_seconds_ = time.perf_counter() - started
        self.n_parameters_ = net.n_parameters()
        return self

    def _set_threshold(self, y_val: np.ndarray, val_proba: np.ndarray) -> None:
        self.threshold_, self.threshold_info_ = None, {"method": "argmax"}
        if len(self.classes_) == 2 and len(np.unique(y_val)) == 2:
            choice = choose_threshold(y_val, val_proba[:, 1], self.threshold, self._target_sensitivity())
            self.threshold_, self.threshold_info_ = choice.threshold, choice.to_dict()
        elif len(self.classes_) == 2:
            self.threshold_, self.threshold_info_ = (
                0.5,
                {"method": "fixed", "threshold": 0.5, "note": "validation lacks a class"},
            )
        self.validation_metrics_ = classification_metrics(
            y_val, val_proba, self.classes_, self.threshold_, n_resamples=BOOTSTRAP_RESAMPLES
        )

    def set_threshold(
        self, threshold: float | None = None, target_sensitivity: float | None = None, method: str = "youden"
    ) -> ImageClassifier:
        """Re-choose the decision threshold on the stored validation predictions
        (or set a fixed one), and refresh ``validation_metrics_``."""
        self._check_fitted()
        if len(self.classes_) != 2:
            raise ValueError("a decision threshold applies to two-class models only")
        y, p = self.val_labels_, self.val_proba_
        if threshold is not None:
            choice = choose_threshold(y, p[:, 1], "fixed", fixed=float(threshold))
        else:
            choice = choose_threshold(y, p[:, 1], method, target_sensitivity)
        self.threshold_, self.threshold_info_ = choice.threshold, choice.to_dict()
        self.validation_metrics_ = classification_metrics(
            y, p, self.classes_, self.threshold_, n_resamples=BOOTSTRAP_RESAMPLES
        )
        return self

    # ------------------------------------------------------------------ inference

    @property
    def decode_settings(self) -> DecodeSettings:
        """How to decode an uploaded image for this model."""
        self._check_fitted()
        return self.decode_settings_

    def _check_fitted(self) -> None:
        check_fitted(self, "network_")

    def _network(self):
        """The fitted network, on the device ``device`` names now."""
        device = select_device(self.device)
        if self.network_.device != device:
            self.network_.to(device)
        return self.network_

    def predict_logits(self, X, batch_size: int = 64, tta: bool | None = None) -> np.ndarray:
        """The network's outputs, float32 ``(n, 1)`` for two classes (the positive
        class's logit), ``(n, K)`` otherwise; the temperature is not applied."""
        self._check_fitted()
        X = check_images(X, "X", allow_empty=False)
        views = get_views(self.train_config_.get("views", "none"))
        logits = predict_logits(
            self._network(), X, batch_size, self.channels_last, self.tta if tta is None else tta, views=views
        )
        return logits.float().numpy()

    def predict_proba(self, X, batch_size: int = 64, tta: bool | None = None) -> np.ndarray:
        """Class probabilities, float64 ``(n, len(classes_))``: the sigmoid / softmax
        of the logits divided by ``temperature_``."""
        return self.proba_from_logits(self.predict_logits(X, batch_size, tta))

    def proba_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities from :meth:`predict_logits` outputs, ``temperature_`` applied."""
        z = torch.from_numpy(np.asarray(logits, dtype=np.float32))
        temperature = getattr(self, "temperature_", 1.0)
        if temperature != 1.0:
            z = z / temperature
        return logits_to_proba(z).double().numpy()

    def predict(self, X, batch_size: int = 64) -> np.ndarray:
        """Class indices into ``classes_`` (the threshold applied for two classes)."""
        return predict_from_proba(self.predict_proba(X, batch_size), self.threshold_)

    def score(self, X, y) -> float:
        """Accuracy at the stored threshold (y: indices or class names)."""
        y_idx, _ = _encode_labels(y, self.classes_)
        return float(np.mean(self.predict(X) == y_idx))

    def evaluate(self, X, y) -> dict:
        """All metrics of :func:`pixsort.classify.metrics.classification_metrics`."""
        y_idx, _ = _encode_labels(y, self.classes_)
        return classification_metrics(y_idx, self.predict_proba(X), self.classes_, self.threshold_)

    # ------------------------------------------------------------------ persistence

    def export_onnx(self, path: str | os.PathLike, *, images=None, atol: float = 1e-4) -> dict:
        """Write this model as one ONNX graph (uint8 images in, ``predict_proba``'s
        probabilities out, dynamic batch) to ``path``, kept only if ONNX Runtime
        matches torch within ``atol``; see :mod:`pixsort.classify.export`.  Returns the
        record written beside it (``<path>.json``)."""
        from pixsort.classify.export import export_onnx

        return export_onnx(self, path, images=images, atol=atol)

    def save(self, path: str | os.PathLike, *, weights: bool = True) -> Path:
        """Write ``model.json`` + ``weights.safetensors`` into the folder ``path``;
        ``weights=False`` rewrites only ``model.json`` of a saved model (a new
        threshold, temperature or provenance; the weights file stays as it is)."""
        self._check_fitted()
        spec = {k: v for k, v in self.spec_.items() if k != "weights_path"}
        meta = {
            "decode": self.decode_settings_.to_dict(),
            "classes": self.classes_,
            "positive_class": self.classes_[1] if len(self.classes_) == 2 else None,
            "threshold": self.threshold_,
            "threshold_info": self.threshold_info_,
            "temperature": float(getattr(self, "temperature_", 1.0)),
            "calibration": getattr(self, "calibration_", None),
            "architecture": spec,
            "preprocessing": {
                "input": "uint8 (H, W, C) decoded with 'decode', scaled to [0, 1]",
                "input_size": spec["input_size"],
                "mean": spec["mean"],
                "std": spec["std"],
                "resize_inside_model": "bilinear",
            },
            "params": self.model_params(),
            "train_config": self.train_config_,
            "training": self.training_,
            "history": self.history_,
            "lr_finder": self.lr_finder_,
            "validation_metrics": self.validation_metrics_,
            "n_parameters": self.n_parameters_,
            "fit_seconds": self.fit_seconds_,
            "validation_predictions": {
                "labels": self.val_labels_.tolist(),
                "proba": np.round(self.val_proba_, 6).tolist(),
            },
            "provenance": getattr(self, "provenance_", None),
            "pixsort_version": _version(),
        }
        if not weights:
            if not (Path(path) / WEIGHTS_FILE).exists():
                raise FileNotFoundError(f"{path} holds no {WEIGHTS_FILE}: save with weights=True first")
            return write_model_meta(path, "classifier", meta)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network_.state_dict().items()}
        return write_model_folder(path, "classifier", meta, state)

    @classmethod
    def load(cls, path: str | os.PathLike, *, meta: dict | None = None, device: str = "auto") -> ImageClassifier:
        """Rebuild a saved classifier (architecture from JSON, weights from safetensors)
        on ``device``; ``meta`` is its ``model.json`` when already read."""
        select_device(device)  # a device this machine lacks is the caller's error, not the folder's
        folder, meta, state = read_model_folder(path, "classifier", meta=meta, framework="pt")
        try:
            return cls._from_folder(folder, meta, state, device)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise model_problem(folder, exc) from None

    @classmethod
    def _from_folder(cls, folder: Path, meta: dict, state: dict, device: str) -> ImageClassifier:
        if "architecture" not in meta:
            raise ModelFileError(f"{folder}: model.json has no 'architecture' (the network cannot be rebuilt)")
        classes = meta["classes"]
        if not isinstance(classes, list) or len(classes) < 2:
            raise ModelFileError(f"{folder}: model.json 'classes' must list two or more classes, got {classes!r}")
        n_outputs = meta["architecture"].get("n_outputs")
        if n_outputs != n_outputs_for(len(classes)):
            raise ModelFileError(
                f"{folder}: model.json lists {len(classes)} classes but the network has {n_outputs} output(s) "
                f"(expected {n_outputs_for(len(classes))})"
            )
        threshold = meta.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1
        ):
            raise ModelFileError(f"{folder}: model.json 'threshold' must be a number in [0, 1], got {threshold!r}")
        params = dict(meta.get("params", {}))
        if "seed" in params:  # files written before one name for the seed
            params["random_state"] = params.pop("seed")
        valid = set(cls._get_param_names())
        params.pop("device", None)
        clf = cls(**{k: v for k, v in params.items() if k in valid}, progress=False, device=device)
        clf.check_params()
        spec = meta["architecture"]
        net = build_network(spec, pretrained=False)
        net.load_state_dict(state, strict=True)
        net.to(select_device(device))
        if clf.channels_last:
            net.to(memory_format=torch.channels_last)
        net.set_precision(clf.precision)
        net.eval()
        clf.network_, clf.spec_ = net, spec
        clf.classes_ = list(meta["classes"])
        clf.threshold_ = meta["threshold"]
        clf.threshold_info_ = meta.get("threshold_info", {})
        clf.temperature_ = float(meta.get("temperature", 1.0))
        clf.calibration_ = meta.get("calibration")
        clf.provenance_ = meta.get("provenance")
        clf.validation_metrics_ = meta.get("validation_metrics", {})
        clf.history_ = meta.get("history", [])
        clf.lr_finder_ = meta.get("lr_finder")
        clf.train_config_ = meta.get("train_config", {})
        clf.training_ = meta.get("training", {})
        clf.decode_settings_ = DecodeSettings.from_dict(meta["decode"])
        clf.fit_seconds_ = meta.get("fit_seconds")
        clf.n_parameters_ = meta.get("n_parameters")
        vp = meta.get("validation_predictions") or {}
        clf.val_labels_ = np.asarray(vp.get("labels", []), dtype=np.int64)
        clf.val_proba_ = np.asarray(vp.get("proba", []), dtype=np.float64)
        return clf


# ----------------------------------------------------------------------------- helpers


def _encode_labels(y, classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind in "iu":
        if (arr < 0).any():
            raise ValueError("labels must be >= 0 (unlabelled items cannot be trained on)")
        names = list(classes) if classes is not None else [str(i) for i in range(int(arr.max()) + 1)]
        if arr.size and arr.max() >= len(names):
            raise ValueError(f"label {arr.max()} is out of range for {len(names)} classes")
        return arr.astype(np.int64), [str(n) for n in names]
    strings = arr.astype(str)
    names = list(classes) if classes is not None else sorted(set(strings.tolist()))
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(strings.tolist()) - set(lookup))
    if unknown:
        raise ValueError(f"unknown class names {unknown[:5]}; known: {names}")
    return np.array([lookup[s] for s in strings], dtype=np.int64), names


def _channel_stats(X: np.ndarray, max_images: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in [0, 1] units of (up to ``max_images`` evenly spaced) images."""
    step = max(1, len(X) // max_images)
    sample = np.asarray(X[::step], dtype=np.float32) / 255.0
    mean = sample.mean(axis=(0, 1, 2))
    std = sample.std(axis=(0, 1, 2))
    if sample.shape[-1] == 1:
        mean, std = np.repeat(mean, 3), np.repeat(std, 3)
    return [float(m) for m in mean], [float(max(s, 1e-3)) for s in std]


def _version() -> str:
    from pixsort import __version__

    return __version__


__all__ = ["RUN_PARAMS", "ImageClassifier"]
