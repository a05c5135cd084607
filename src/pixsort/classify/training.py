"""The training loop: one function, :func:`fit_network`, for every architecture.

What it does, in order:

* if the network has a frozen part and augmentation is off, the frozen part's
  outputs are computed once for train and validation and the trainable part is
  trained on them (a linear probe on 4,400 cached embeddings costs milliseconds an
  epoch instead of minutes);
* with ``find_lr``, a learning-rate range test (:mod:`~pixsort.classify.lr_finder`) on
  the training batches (the cached features when there are any) chooses ``lr``; the
  network and optimizer are restored, so the run is the one a fixed ``lr`` of that
  value gives;
* class imbalance: loss weights, a balanced sampler (with replacement, per epoch),
  or nothing (oversampling by augmented copies happens before, on the images);
* Adam / AdamW over the network's parameter groups (discriminative learning rates
  for fine-tuning), a per-step one-cycle, cosine or constant schedule;
* after each epoch: validation metrics, the best weights kept by ``monitor``, a
  checkpoint (weights files named by ``state.json``, committed by its rename) so that an interrupted run
  resumes where it stopped, and early stopping after ``patience`` epochs without
  improvement or when the time budget would be exceeded.

All randomness (order, sampling, augmentation, dropout) derives from ``random_state`` and
the epoch number, so a resumed run sees the same batches it would have seen.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from pixsort.base.modelfile import file_sha256
from pixsort.base.progress import Progress
from pixsort.base.runtime import PRECISIONS
from pixsort.classify.augment import AugmentConfig, apply_view, augment_batch, get_views, to_float
from pixsort.classify.lr_finder import lr_range_test
from pixsort.classify.metrics import classification_metrics, monitor_value
from pixsort.classify.networks import ClassifierNet
from pixsort.classify.onnxrt import frozen_runner

BALANCE_MODES = ("none", "weights", "sampler", "oversample")
SCHEDULES = ("constant", "onecycle", "cosine")
OPTIMIZERS = ("adam", "adamw")
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """Resolved training settings (a model's recipe merged with the user's choices)."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    balance: str = "weights"
    label_smoothing: float = 0.0
    mixup: float = 0.0
    views: str = "none"
    patience: int | None = 5
    monitor: str = "roc_auc"
    random_state: int = 0
    precision: str = "auto"
    channels_last: bool = True
    max_seconds: float | None = None
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        check_config(self)  # a config is valid from the moment it exists

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    def fingerprint(self) -> str:
        """Identity of a run for resuming: everything except the time budget."""
        d = self.to_dict()
        d.pop("max_seconds", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    """What a training run produced (the network holds the best weights)."""

    history: list[dict]
    best_epoch: int
    best_score: float
    val_proba: np.ndarray | None  # best epoch's validation probabilities, (n_val, K)
    stopped: str  # "completed" | "early_stopping" | "time_budget"
    seconds: float
    cached_features: bool
    resumed_from_epoch: int = 0
    lr_finder: dict | None = None  # the range test's curve and choice, when it chose ``lr``
    features_runtime: str = "torch"  # what computed the cached features: "torch" | "onnxruntime"


# ----------------------------------------------------------------------------- helpers


def logits_to_proba(logits: torch.Tensor) -> torch.Tensor:
    """``(N, 1)`` -> two columns via sigmoid; ``(N, K)`` -> softmax."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def lr_factor(schedule: str, step: int, total: int, warmup_frac: float = 0.3) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total``."""
    if schedule == "constant" or total <= 1:
        return 1.0
    t = min(step / (total - 1), 1.0)
    if schedule == "cosine":
        warm = 0.05
        if t < warm:
            return 0.1 + 0.9 * t / warm
        return 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm))) * 0.99 + 0.01
    if schedule == "onecycle":  # linear warm-up from lr/25 then cosine down to lr/1e4 (fastai/torch defaults)
        if t < warmup_frac:
            return 1 / 25 + (1 - 1 / 25) * t / warmup_frac
        u = (t - warmup_frac) / (1 - warmup_frac)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * u))
    raise ValueError(f"unknown schedule {schedule!r}; choose from {SCHEDULES}")


def _channels_last(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if enabled and x.ndim == 4 else x


def _epoch_generator(random_state: int, epoch: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(random_state) * 1_000_003 + epoch * 7919 + stream)


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (K * count_c)``: each class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)


@torch.inference_mode()
def compute_features(
    net: ClassifierNet,
    images: np.ndarray,
    batch_size: int,
    channels_last: bool = True,
    progress=None,
    label: str = "Caching frozen features",
    view: float = 1.0,
    runner=None,
) -> torch.Tensor:
    """Outputs of ``net``'s frozen part for uint8 images ``(N, H, W, C)`` (float32, on the
    network's device), of each image seen through ``view``
    (:func:`~pixsort.classify.augment.apply_view`); ``runner``
    (``onnxrt.frozen_runner``) computes the plain view instead of torch."""
    net.eval()
    device = net.device
    task = progress.add_task(label, total=len(images)) if progress is not None else None
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if runner is not None and view == 1.0:
            chunks.append(runner(batch).to(device))
        else:
            x = _channels_last(apply_view(to_float(batch).to(device), view), channels_last)
            chunks.append(net.features(x).contiguous())
        if task is not None:
            progress.advance(task, len(batch))
    if task is not None:
        progress.remove_task(task)
    return torch.cat(chunks) if chunks else torch.empty(0)


@torch.inference_mode()
def predict_logits(
    net: ClassifierNet,
    images: np.ndarray,
    batch_size: int = 64,
    channels_last: bool = True,
    tta: bool = False,
    views: tuple[float, ...] = (1.0,),
) -> torch.Tensor:
    """Logits for uint8 images ``(N, H, W, C)``, as :func:`batch_logits` computes them.
    The batches run on the network's device; the logits come back on the CPU."""
    net.eval()
    device = net.device
    out = []
    for start in range(0, len(images), batch_size):
        x = _channels_last(to_float(images[start : start + batch_size]).to(device), channels_last)
        out.append(batch_logits(net, x, tta, views).cpu())
    return torch.cat(out) if out else torch.empty(0, net.spec["n_outputs"])


def batch_logits(net: ClassifierNet, x: torch.Tensor, tta: bool = False, views: tuple[float, ...] = (1.0,)):
    """Logits of one float batch ``(N, C, H, W)`` in [0, 1] (the ONNX export traces this
    same function).  With several ``views`` (aspect stretches,
    :func:`~pixsort.classify.augment.apply_view`) and with ``tta`` (each also mirrored)
    the probabilities are averaged and returned as logits of the averaged probability."""
    if tuple(views) == (1.0,) and not tta:
        return net(x)
    probs = []
    for view in views:
        xv = apply_view(x, view)
        probs.append(logits_to_proba(net(xv)))
        if tta:
            probs.append(logits_to_proba(net(torch.flip(xv, dims=[3]))))
    return _proba_to_logits(torch.stack(probs).mean(0), net.spec["n_outputs"])


def _proba_to_logits(p: torch.Tensor, n_outputs: int) -> torch.Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)
    if n_outputs == 1:
        return torch.log(p[:, 1:] / p[:, :1])
    return torch.log(p)


# ----------------------------------------------------------------------------- checkpoints


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        meta["state"][str(pid)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{pid}.{name}"] = value.detach().clone().contiguous()
                meta["state"][str(pid)][name] = "tensor"
            else:
                meta["state"][str(pid)][name] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for pid, entries in meta["state"].items():
        state[int(pid)] = {
            name: tensors[f"optimizer.{pid}.{name}"] if value == "tensor" else value for name, value in entries.items()
        }
    return {"state": state, "param_groups": meta["param_groups"]}


class Checkpointer:
    """A training checkpoint in one folder, committed atomically by ``state.json``.

    Each save writes the trainable weights + optimizer tensors (``last-<id>.safetensors``)
    and, when the epoch improved, the best weights (``best-<id>.safetensors``) under new
    names, then replaces ``state.json``, which names the files of the checkpoint and
    their SHA-256.  That one rename is the commit: a run killed at any point leaves
    either the old checkpoint or the new one, never last weights of one epoch beside the
    state of another.  Files no longer named are removed after the commit.  Folders
    written before (fixed ``last.safetensors``/``best.safetensors``, no ``files``) are read.
    """

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def _write(self, tensors: dict[str, torch.Tensor], name: str) -> str:
        tmp = self.folder / (name + ".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(self.folder / name)
        return file_sha256(self.folder / name)

    def _committed_files(self) -> dict:
        try:
            state = json.loads((self.folder / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return _checkpoint_files(state)

    def save(
        self, net: ClassifierNet, optimizer: torch.optim.Optimizer, state: dict, best_state: dict | None, improved: bool
    ) -> None:
        if self.folder is None:
            return
        token = uuid.uuid4().hex[:12]
        files = {r: e for r, e in self._committed_files().items() if (self.folder / e["file"]).exists()}
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        weights = {f"model.{k}": v for k, v in net.trainable.state_dict().items()}
        last = f"last-{token}.safetensors"
        files["last"] = {"file": last, "sha256": self._write({**weights, **opt_tensors}, last)}
        if improved and best_state is not None:
            best = f"best-{token}.safetensors"
            files["best"] = {"file": best, "sha256": self._write(best_state, best)}
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(
            json.dumps({**state, "optimizer": opt_meta, "files": files, "version": CHECKPOINT_VERSION}, indent=1)
        )
        tmp.replace(self.folder / "state.json")  # the commit
        keep = {f["file"] for f in files.values()} | {"state.json"}
        for path in self.folder.iterdir():
            if path.name not in keep and path.suffix in (".safetensors", ".tmp") and path.name != "state.json":
                path.unlink(missing_ok=True)

    def load(self, fingerprint: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor] | None] | None:
        """(state, last tensors, best weights) of a compatible checkpoint, else None."""
        if self.folder is None or not (self.folder / "state.json").exists():
            return None
        state = json.loads((self.folder / "state.json").read_text())
        if state.get("fingerprint") != fingerprint:
            raise ValueError(
                f"the checkpoint in {self.folder} was written with other training settings; "
                "resume with the same settings, or start afresh without resume"
            )
        files = _checkpoint_files(state)
        loaded = {}
        for role in ("last", "best"):
            entry = files.get(role)
            if entry is None:
                continue
            path = self.folder / entry["file"]
            if not path.exists() and role == "best" and entry.get("sha256") is None:
                continue  # an old folder whose run never improved
            if not path.exists() or (entry.get("sha256") and file_sha256(path) != entry["sha256"]):
                raise ValueError(f"the checkpoint in {self.folder} is damaged: {entry['file']} is missing or altered")
            loaded[role] = load_file(str(path))
        if "last" not in loaded:
            raise ValueError(f"the checkpoint in {self.folder} names no last weights")
        return state, loaded["last"], loaded.get("best")


def _checkpoint_files(state: dict) -> dict:
    """{role: {"file", "sha256"}} of a checkpoint's state; old folders had fixed names."""
    if isinstance(state.get("files"), dict):
        return state["files"]
    return {role: {"file": f"{role}.safetensors", "sha256": None} for role in ("last", "best")}


# ----------------------------------------------------------------------------- loop


def fit_network(
    net: ClassifierNet,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    class_names: list[str],
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    find_lr: bool = False,
    device: torch.device | None = None,
) -> TrainResult:
    """Train ``net`` in place; on return it holds the weights of the best epoch.

    Parameters
    ----------
    train_images, val_images : uint8 (N, H, W, C)
    train_labels, val_labels : int (N,), indices into ``class_names``
    cfg : TrainConfig (checked when it was made)
    checkpoint_dir : folder for ``last``/``best`` checkpoints (None: keep in memory only)
    resume : continue from the checkpoint in ``checkpoint_dir`` if there is one
    find_lr : choose ``cfg.lr`` by a learning-rate range test first (``cfg.lr`` is ignored);
        a resumed run repeats the test (deterministic: the same network, the same batches)
    device : where the network and its batches go (None: where the network is);
        images are decoded and augmented on the CPU, then moved
    """
    torch.manual_seed(cfg.random_state)
    n_classes = len(class_names)
    y_train = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    y_val = np.asarray(val_labels, dtype=np.int64)
    started = time.perf_counter()
    ckpt = Checkpointer(checkpoint_dir)
    if device is not None:
        net.to(device)

    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    net.set_precision(cfg.precision)
    use_cache = net.has_frozen_part and cfg.augment.is_identity

    views = get_views(cfg.views)
    with Progress(progress) as bar:
        train_feats = val_feats = runner = None
        if use_cache:  # ONNX Runtime where it gives torch's float32 features faster (onnxrt.frozen_runner)
            runner = frozen_runner(net, train_images[:16], len(train_images) + len(val_images))
            shown = bar if progress else None
            # every view of every training image is one training row; validation keeps
            # its views apart so its probabilities are averaged as predict_proba does
            train_feats = torch.cat([compute_features(net, train_images, cfg.eval_batch_size, cfg.channels_last,
                                                      shown, f"Caching frozen features (train, view {v:g})", v,
                                                      runner)
                                     for v in views])  # fmt: skip
            val_feats = [compute_features(net, val_images, cfg.eval_batch_size, cfg.channels_last, shown,
                                          f"Caching frozen features (val, view {v:g})", v, runner)
                         for v in views]  # fmt: skip
            if len(views) > 1:
                train_labels = np.tile(np.asarray(train_labels), len(views))
                y_train = torch.as_tensor(train_labels, dtype=torch.long)
        elif len(views) > 1:
            raise ValueError("views need a frozen part and no augmentation (they are cached features)")
        y_train = y_train.to(net.device)

        loss_fn = _loss_function(train_labels, n_classes, cfg.balance, cfg.label_smoothing, net.device)
        optimizer = _make_optimizer(net, cfg)
        total_steps = max(1, math.ceil(len(train_labels) / cfg.batch_size)) * cfg.epochs
        sample_weights = None
        if cfg.balance == "sampler":
            sample_weights = torch.as_tensor(class_weights(train_labels, n_classes)[train_labels], dtype=torch.float64)
        lr_finder = None
        if find_lr:
            lr_finder = _find_lr(net, optimizer, loss_fn, cfg, train_images, train_feats, y_train, sample_weights)
            cfg = replace(cfg, lr=lr_finder["chosen"])  # from here on: the run a fixed lr of this value makes
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * g.get("lr_scale", 1.0)
            bar.print(f"learning rate {cfg.lr:.3g} from the range test ({lr_finder['rule']})")

        history: list[dict] = []
        best_score, best_epoch, best_state, best_val_proba = -math.inf, 0, None, None
        start_epoch, stale, resumed_from = 0, 0, 0
        fingerprint = cfg.fingerprint()
        loaded = ckpt.load(fingerprint) if resume else None
        if loaded is not None:
            state, last, best = loaded
            net.trainable.load_state_dict({k[len("model.") :]: v for k, v in last.items() if k.startswith("model.")})
            optimizer.load_state_dict(_unflatten_optimizer(last, state["optimizer"]))
            history, start_epoch = state["history"], state["epoch"]
            best_score, best_epoch, stale = state["best_score"], state["best_epoch"], state["stale"]
            best_state = best
            resumed_from = start_epoch
            bar.print(f"resuming after epoch {start_epoch} (best {cfg.monitor} {best_score:.4f} at epoch {best_epoch})")

        patience_spent = cfg.patience is not None and stale >= cfg.patience  # a resumed run that had stopped
        stopped = "early_stopping" if patience_spent else "completed"
        epoch_seconds: list[float] = []
        for epoch in range(start_epoch, start_epoch if patience_spent else cfg.epochs):
            t0 = time.perf_counter()
            train_loss = _train_epoch(net, optimizer, loss_fn, cfg, epoch, train_images, train_feats, y_train,
                                      sample_weights, total_steps, bar)  # fmt: skip

            val_proba = _val_proba(net, val_images, val_feats, cfg)
            metrics = classification_metrics(y_val, val_proba, class_names, threshold=0.5 if n_classes == 2 else None)
            score = monitor_value(metrics, cfg.monitor)
            improved = score > best_score + 1e-6
            if improved:
                best_score, best_epoch, stale = score, epoch + 1, 0
                best_state = {f"model.{k}": v.detach().clone() for k, v in net.trainable.state_dict().items()}
                best_val_proba = val_proba
            else:
                stale += 1
            seconds = time.perf_counter() - t0
            epoch_seconds.append(seconds)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": metrics["log_loss"],
                "val_accuracy": metrics["accuracy"],
                "val_balanced_accuracy": metrics["balanced_accuracy"],
                "val_roc_auc": metrics["roc_auc"],
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": seconds,
            }
            history.append(row)
            bar.print(_epoch_line(row, cfg.monitor, score, improved))
            progress_state = {"epoch": epoch + 1, "history": history, "best_score": best_score,
                              "best_epoch": best_epoch, "stale": stale, "fingerprint": fingerprint,
                              "config": cfg.to_dict()}  # fmt: skip
            ckpt.save(net, optimizer, progress_state, best_state, improved)
            if cfg.patience is not None and stale >= cfg.patience:
                stopped = "early_stopping"
                break
            elapsed = time.perf_counter() - started
            if cfg.max_seconds is not None and elapsed + np.mean(epoch_seconds) > cfg.max_seconds:
                stopped = "time_budget" if epoch + 1 < cfg.epochs else "completed"
                break

    if best_state is not None:
        net.trainable.load_state_dict({k[len("model.") :]: v for k, v in best_state.items()})
    if best_val_proba is None and len(val_labels):  # resumed with nothing left to train
        best_val_proba = _val_proba(net, val_images, val_feats, cfg)
    net.eval()
    seconds = time.perf_counter() - started
    runtime = runner.name if runner is not None else "torch"
    return TrainResult(
        history, best_epoch, float(best_score), best_val_proba, stopped, seconds, use_cache, resumed_from, lr_finder,
        runtime,
    )  # fmt: skip


def _loss_function(
    train_labels: np.ndarray, n_classes: int, balance: str, smoothing: float = 0.0, device: torch.device | None = None
):
    """``loss(logits, y)``: binary cross-entropy on one logit for two classes (with the
    positive class weighted by ``pos_weight`` when balancing by weights), else
    cross-entropy, class-weighted when balancing by weights; ``smoothing`` moves each
    target that share of the way towards uniform (label smoothing)."""
    weights = class_weights(train_labels, n_classes) if balance == "weights" else None
    if n_classes == 2:
        pos_weight = None
        if weights is not None and weights[1] > 0:
            pos_weight = torch.tensor([weights[1] / weights[0]], dtype=torch.float32, device=device)

        def binary(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = y.float() * (1.0 - smoothing) + 0.5 * smoothing if smoothing else y.float()
            return F.binary_cross_entropy_with_logits(logits[:, 0].float(), target, pos_weight=pos_weight)

        return binary
    w = torch.as_tensor(weights, dtype=torch.float32, device=device) if weights is not None else None
    return lambda logits, y: F.cross_entropy(logits.float(), y, weight=w, label_smoothing=smoothing)


def _train_epoch(net, optimizer, loss_fn, cfg: TrainConfig, epoch: int, train_images: np.ndarray,
                 train_feats: torch.Tensor | None, y_train: torch.Tensor, sample_weights: torch.Tensor | None,
                 total_steps: int, bar: Progress) -> float:  # fmt: skip
    """One pass over the training set in this epoch's seeded order (sampled with
    replacement when balancing by sampler); returns the mean training loss.

    With ``train_feats`` (the frozen part's cached outputs) only the trainable part
    runs; otherwise images are augmented and go through the whole network."""
    n = len(y_train)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    gen = _epoch_generator(cfg.random_state, epoch)
    mix_rng = np.random.default_rng([cfg.random_state, epoch])
    torch.manual_seed(cfg.random_state * 1_000_003 + epoch)  # dropout
    if sample_weights is not None:
        order = torch.multinomial(sample_weights, n, replacement=True, generator=gen)
    else:
        order = torch.randperm(n, generator=gen)
    net.train()
    task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=n)
    running, seen = 0.0, 0
    for b in range(steps_per_epoch):
        idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        if len(idx) == 0:
            continue
        step = epoch * steps_per_epoch + b
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * g.get("lr_scale", 1.0) * lr_factor(cfg.schedule, step, total_steps)
        if train_feats is not None:
            x, forward = train_feats[idx], net.head
        else:
            idx = torch.sort(idx).values  # ascending reads are faster on a memmap
            x = to_float(train_images[idx.numpy()])
            x, forward = _channels_last(augment_batch(x, cfg.augment, gen).to(net.device), cfg.channels_last), net
        if cfg.mixup:
            # mixup (Zhang et al. 2018): convex pairs of inputs, the loss mixed alike
            lam = float(mix_rng.beta(cfg.mixup, cfg.mixup))
            pair = torch.randperm(len(idx), generator=gen).to(x.device)
            logits = forward(lam * x + (1.0 - lam) * x[pair])
            loss = lam * loss_fn(logits, y_train[idx]) + (1.0 - lam) * loss_fn(logits, y_train[idx][pair])
        else:
            logits = forward(x)
            loss = loss_fn(logits, y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item() * len(idx)
        seen += len(idx)
        bar.advance(task, len(idx), info=f"loss {running / seen:.4f}")
    bar.remove_task(task)
    return running / max(seen, 1)


def _find_lr(net, optimizer, loss_fn, cfg: TrainConfig, train_images: np.ndarray, train_feats: torch.Tensor | None,
             y_train: torch.Tensor, sample_weights: torch.Tensor | None) -> dict:  # fmt: skip
    """The range test on this run's training batches: full batches in a seeded order of
    their own (sampled with replacement when balancing by sampler), augmented as in
    training, through the trainable part only when the frozen part's outputs are cached;
    a flat curve keeps ``cfg.lr`` (the recipe's)."""
    n = len(y_train)
    gen = _epoch_generator(cfg.random_state, 0, stream=LR_FINDER_STREAM)

    def batches():
        while True:
            if sample_weights is not None:
                order = torch.multinomial(sample_weights, n, replacement=True, generator=gen)
            else:
                order = torch.randperm(n, generator=gen)
            for start in range(0, max(n - cfg.batch_size, 0) + 1, cfg.batch_size):  # no short last batch
                yield order[start : start + cfg.batch_size]

    feed = batches()

    def batch_loss() -> torch.Tensor:
        idx = next(feed)
        if train_feats is not None:
            return loss_fn(net.head(train_feats[idx]), y_train[idx])
        idx = torch.sort(idx).values
        x = augment_batch(to_float(train_images[idx.numpy()]), cfg.augment, gen).to(net.device)
        return loss_fn(net(_channels_last(x, cfg.channels_last)), y_train[idx])

    result = lr_range_test(net, optimizer, batch_loss, default_lr=cfg.lr).to_dict()
    result["on_cached_features"] = train_feats is not None
    return result


LR_FINDER_STREAM = 104_729  # the range test's batches: a random stream no epoch uses


def _val_proba(
    net: ClassifierNet, images: np.ndarray, feats: list[torch.Tensor] | None, cfg: TrainConfig
) -> np.ndarray:
    """Validation probabilities, averaged over the views' cached features when there are any."""
    net.eval()
    with torch.inference_mode():
        if feats is None:
            return logits_to_proba(predict_logits(net, images, cfg.eval_batch_size, cfg.channels_last)).double().numpy()
        per_view = [
            logits_to_proba(torch.cat([net.head(f[i : i + 256]) for i in range(0, len(f), 256)]).cpu()) for f in feats
        ]
    return torch.stack(per_view).mean(0).double().numpy()


def _make_optimizer(net: ClassifierNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = net.param_groups(cfg.lr, cfg.weight_decay)
    if cfg.optimizer == "adam":
        for g in groups:  # the seed's Adam: L2 via weight_decay only if asked
            g["weight_decay"] = cfg.weight_decay if g["weight_decay"] else 0.0
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def _epoch_line(row: dict, monitor: str, score: float, improved: bool) -> str:
    auc = row["val_roc_auc"]
    mark = " [green]*best*[/]" if improved else ""
    auc_txt = f"  val_auc {auc:.4f}" if auc is not None else ""
    return (
        f"epoch {row['epoch']:>3}  loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
        f"val_acc {row['val_accuracy']:.4f}{auc_txt}  ({row['seconds']:.0f}s){mark}"
    )


def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError for settings outside the known choices."""
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
        raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
    if cfg.balance not in BALANCE_MODES:
        raise ValueError(f"unknown balance {cfg.balance!r}; choose from {BALANCE_MODES}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from {SCHEDULES}")
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose from {OPTIMIZERS}")
    if not 0.0 <= cfg.label_smoothing < 1.0 or cfg.mixup < 0:
        raise ValueError("label_smoothing must be in [0, 1) and mixup (the Beta alpha) >= 0")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {cfg.precision!r}; choose from {PRECISIONS}")
