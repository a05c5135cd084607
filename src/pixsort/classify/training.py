"""The training loop: one function, :func:`fit_network`, for every architecture.

What it does, in order:

* if the network has a frozen part and augmentation is off, the frozen part's
  outputs are computed once for train and validation and the trainable part is
  trained on them (a linear probe on 4,400 cached embeddings costs milliseconds an
  epoch instead of minutes);
* class imbalance: loss weights, a balanced sampler (with replacement, per epoch),
  or nothing (oversampling by augmented copies happens before, on the images);
* Adam / AdamW over the network's parameter groups (discriminative learning rates
  for fine-tuning), a per-step one-cycle, cosine or constant schedule;
* after each epoch: validation metrics, the best weights kept by ``monitor``, a
  checkpoint (``last.safetensors`` + ``state.json``) so that an interrupted run
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from pixsort.base.progress import Progress
from pixsort.base.runtime import PRECISIONS
from pixsort.classify.augment import AugmentConfig, augment_batch, to_float
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
    runner=None,
) -> torch.Tensor:
    """Outputs of ``net``'s frozen part for uint8 images ``(N, H, W, C)`` (float32, on the
    network's device); ``runner`` (``onnxrt.frozen_runner``) computes them instead of torch."""
    net.eval()
    device = net.device
    task = progress.add_task(label, total=len(images)) if progress is not None else None
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if runner is not None:
            chunks.append(runner(batch).to(device))
        else:
            x = _channels_last(to_float(batch).to(device), channels_last)
            chunks.append(net.features(x).contiguous())
        if task is not None:
            progress.advance(task, len(batch))
    if task is not None:
        progress.remove_task(task)
    return torch.cat(chunks) if chunks else torch.empty(0)


@torch.inference_mode()
def predict_logits(
    net: ClassifierNet, images: np.ndarray, batch_size: int = 64, channels_last: bool = True, tta: bool = False
) -> torch.Tensor:
    """Logits for uint8 images ``(N, H, W, C)``; ``tta`` averages the probabilities of
    the image and its mirror (returned as logits of the averaged probability).  The
    batches run on the network's device; the logits come back on the CPU."""
    net.eval()
    device = net.device
    out = []
    for start in range(0, len(images), batch_size):
        x = _channels_last(to_float(images[start : start + batch_size]).to(device), channels_last)
        out.append(batch_logits(net, x, tta).cpu())
    return torch.cat(out) if out else torch.empty(0, net.spec["n_outputs"])


def batch_logits(net: ClassifierNet, x: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """Logits of one float batch ``(N, C, H, W)`` in [0, 1], as :func:`predict_logits`
    computes them (the ONNX export traces this same function)."""
    logits = net(x)
    if tta:
        p = (logits_to_proba(logits) + logits_to_proba(net(torch.flip(x, dims=[3])))) / 2
        logits = _proba_to_logits(p, logits.shape[1])
    return logits


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
    """``last.safetensors`` (trainable weights + optimizer tensors), ``best.safetensors``
    and ``state.json`` in one folder; every write is atomic (temp file + rename)."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def _atomic_save(self, tensors: dict[str, torch.Tensor], name: str) -> None:
        tmp = self.folder / (name + ".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(self.folder / name)

    def save(
        self, net: ClassifierNet, optimizer: torch.optim.Optimizer, state: dict, best_state: dict | None, improved: bool
    ) -> None:
        if self.folder is None:
            return
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        weights = {f"model.{k}": v for k, v in net.trainable.state_dict().items()}
        self._atomic_save({**weights, **opt_tensors}, "last.safetensors")
        if improved and best_state is not None:
            self._atomic_save(best_state, "best.safetensors")
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(json.dumps({**state, "optimizer": opt_meta, "version": CHECKPOINT_VERSION}, indent=1))
        tmp.replace(self.folder / "state.json")

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
        last = load_file(str(self.folder / "last.safetensors"))
        best_path = self.folder / "best.safetensors"
        best = load_file(str(best_path)) if best_path.exists() else None
        return state, last, best


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
    y_train = y_train.to(net.device)

    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    net.set_precision(cfg.precision)
    use_cache = net.has_frozen_part and cfg.augment.is_identity

    with Progress(progress) as bar:
        train_feats = val_feats = runner = None
        if use_cache:  # ONNX Runtime where it gives torch's float32 features faster (onnxrt.frozen_runner)
            runner = frozen_runner(net, train_images[:16], len(train_images) + len(val_images))
            train_feats = compute_features(
                net,
                train_images,
                cfg.eval_batch_size,
                cfg.channels_last,
                bar if progress else None,
                "Caching frozen features (train)",
                runner,
            )
            val_feats = compute_features(
                net,
                val_images,
                cfg.eval_batch_size,
                cfg.channels_last,
                bar if progress else None,
                "Caching frozen features (val)",
                runner,
            )

        loss_fn = _loss_function(train_labels, n_classes, cfg.balance, net.device)
        optimizer = _make_optimizer(net, cfg)
        total_steps = max(1, math.ceil(len(train_labels) / cfg.batch_size)) * cfg.epochs
        sample_weights = None
        if cfg.balance == "sampler":
            sample_weights = torch.as_tensor(class_weights(train_labels, n_classes)[train_labels], dtype=torch.float64)

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
        best_val_proba = _val_proba(net, val_images, val_feats if use_cache else None, cfg)
    net.eval()
    seconds = time.perf_counter() - started
    return TrainResult(
        history, best_epoch, float(best_score), best_val_proba, stopped, seconds, use_cache, resumed_from,
        runner.name if runner is not None else "torch",
    )  # fmt: skip


def _loss_function(train_labels: np.ndarray, n_classes: int, balance: str, device: torch.device | None = None):
    """``loss(logits, y)``: binary cross-entropy on one logit for two classes (with the
    positive class weighted by ``pos_weight`` when balancing by weights), else
    cross-entropy, class-weighted when balancing by weights."""
    weights = class_weights(train_labels, n_classes) if balance == "weights" else None
    if n_classes == 2:
        pos_weight = None
        if weights is not None and weights[1] > 0:
            pos_weight = torch.tensor([weights[1] / weights[0]], dtype=torch.float32, device=device)
        return lambda logits, y: F.binary_cross_entropy_with_logits(logits[:, 0].float(), y.float(),
                                                                    pos_weight=pos_weight)  # fmt: skip
    w = torch.as_tensor(weights, dtype=torch.float32, device=device) if weights is not None else None
    return lambda logits, y: F.cross_entropy(logits.float(), y, weight=w)


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
            logits = net.head(train_feats[idx])
        else:
            idx = torch.sort(idx).values  # ascending reads are faster on a memmap
            x = to_float(train_images[idx.numpy()])
            x = _channels_last(augment_batch(x, cfg.augment, gen).to(net.device), cfg.channels_last)
            logits = net(x)
        loss = loss_fn(logits, y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.item() * len(idx)
        seen += len(idx)
        bar.advance(task, len(idx), info=f"loss {running / seen:.4f}")
    bar.remove_task(task)
    return running / max(seen, 1)


def _val_proba(net: ClassifierNet, images: np.ndarray, feats: torch.Tensor | None, cfg: TrainConfig) -> np.ndarray:
    net.eval()
    with torch.inference_mode():
        if feats is not None:
            logits = torch.cat([net.head(feats[i : i + 256]) for i in range(0, len(feats), 256)]).cpu()
        else:
            logits = predict_logits(net, images, cfg.eval_batch_size, cfg.channels_last)
    return logits_to_proba(logits).double().numpy()


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
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {cfg.precision!r}; choose from {PRECISIONS}")
