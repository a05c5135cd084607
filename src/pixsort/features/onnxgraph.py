"""A backbone's pooled features computed by ONNX Runtime: exported once into a cache
folder, checked against torch, optionally quantized to int8.

Measured on this project's 2-core AMD EPYC (AVX2, no AVX-512, no native bf16),
EfficientNet-Lite1 at 240 px, 64 CIFAR-10 images, batches of 32 (``bench/runtime.py``):
torch fp32 channels-last ~30 images/s, ONNX Runtime fp32 ~60 (cosine to torch 1.0000),
ONNX Runtime int8 (static QDQ, per-channel) ~80-90.  Quantizing every convolution
loses too much (mean cosine 0.85, min 0.55); keeping the first
:data:`FLOAT_HEAD_CONVS` and the last :data:`FLOAT_TAIL_CONVS` convolutions in float
gives mean 0.9925, min 0.976 (first 3 + last 3: 0.9876; first 5 + last 5: 0.9916).

The int8 graph is calibrated on fixed crops of scikit-learn's two bundled sample
photographs, never on the user's images, so it is a function of the backbone alone
and its embeddings can be cached under one extractor id.

Files: ``<folder>/<digest>.onnx`` and ``<digest>.json`` (what was exported, the
file's SHA-256, the parity measured at export, and images/s of torch and ONNX
Runtime per CPU model, measured on first use on that CPU).  A file whose checksum or
record does not match is exported again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pixsort.base.jsonio import dumps
from pixsort.base.modelfile import file_sha256
from pixsort.base.onnx import export_module, make_session, require_onnx
from pixsort.base.runtime import cpu_description
from pixsort.data.cache import locked_file

from .preprocess import to_float_batch

__all__ = [
    "FLOAT_HEAD_CONVS",
    "FLOAT_TAIL_CONVS",
    "MIN_COSINE",
    "OnnxFeatures",
    "OnnxParityError",
    "calibration_images",
    "load_onnx_features",
    "onnx_export_exists",
    "record_speeds",
]

log = logging.getLogger(__name__)

FORMAT = 1
FLOAT_HEAD_CONVS = 12
FLOAT_TAIL_CONVS = 3
# parity at export, against torch fp32 on the calibration crops: the smallest cosine
# (fp32) and the mean cosine (int8) an exported graph must reach to be used
MIN_COSINE = {"fp32": 0.999, "int8": 0.99}
CALIBRATION_CROPS = 64


class OnnxParityError(RuntimeError):
    """An exported graph whose features are not torch's within :data:`MIN_COSINE`."""


# Images per session run.  ONNX Runtime's arena keeps the largest activations it has
# seen: Lite1 at 240 px held 1.5 GB of peak RSS at batch 64 and 0.77 GB at 16, at the
# same speed (8/16/32/64: 47.8/46.5/46.8/46.1 img/s median, one run, AMD EPYC AVX2).
SESSION_BATCH = 16


class _PooledFeatures(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(images)


class OnnxFeatures:
    """``runner(x)``: float32 NCHW batch (already normalised) -> (N, D) float32 features.

    Attributes
    ----------
    path : Path
        The ``.onnx`` file.
    record : dict
        Its JSON record (parity, speeds, versions).
    """

    def __init__(self, session, path: Path, record: dict):
        self.session, self.path, self.record = session, path, record

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) <= SESSION_BATCH:
            return self.session.run(None, {"images": x})[0]
        parts = [
            self.session.run(None, {"images": x[s : s + SESSION_BATCH]})[0] for s in range(0, len(x), SESSION_BATCH)
        ]
        return np.concatenate(parts)

    def speeds(self) -> dict | None:
        """``{"torch": images/s, "onnx": images/s}`` measured on this CPU model, if any."""
        return self.record.get("speed", {}).get(_cpu_key())


def calibration_images(size: tuple[int, int], n: int = CALIBRATION_CROPS) -> np.ndarray:
    """``n`` uint8 RGB crops ``(n, h, w, 3)`` of scikit-learn's two bundled sample photos,
    at several scales and places (deterministic; no download)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(im) for im in load_sample_images().images]
    rng = np.random.default_rng(0)
    out = np.empty((n, size[0], size[1], 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(min(photo.size) * rng.uniform(0.2, 1.0))
        left = int(rng.integers(0, photo.size[0] - side + 1))
        top = int(rng.integers(0, photo.size[1] - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((size[1], size[0]), Image.BILINEAR)
        out[i] = np.asarray(crop)[:, :, :3]
    return out


def load_onnx_features(net, size: tuple[int, int], folder: str | os.PathLike, precision: str = "fp32") -> OnnxFeatures:
    """The ONNX Runtime runner for ``net``'s pooled features at input ``size``: read from
    ``folder`` when a checked export is there, else exported (under a lock, so two
    processes export once), checked against torch and recorded.

    Raises
    ------
    ImportError
        Without the ``export`` extra.
    OnnxParityError
        When the export's features are not torch's within :data:`MIN_COSINE`.
    RuntimeError
        When the export itself fails.
    """
    require_onnx()
    if precision not in MIN_COSINE:
        raise ValueError(f"ONNX precision must be one of {tuple(MIN_COSINE)}, got {precision!r}")
    folder = Path(folder)
    digest = _digest(net, size, precision)
    path, record_path = folder / f"{digest}.onnx", folder / f"{digest}.json"
    record = _checked_record(path, record_path)
    if record is None:
        with locked_file(folder / f"{digest}.lock"):
            record = _checked_record(path, record_path)
            if record is None:
                record = _export(net, size, precision, path, record_path)
    if record["parity"]["passed"] is not True:
        raise OnnxParityError(_parity_text(record))
    return OnnxFeatures(make_session(path, threads=torch.get_num_threads()), path, record)


def record_speeds(runner: OnnxFeatures, net, x: torch.Tensor, torch_input: torch.Tensor) -> dict:
    """Time torch (on ``torch_input``, in the network's own format) and ONNX Runtime (on
    ``x``, the same batch as contiguous NCHW) once each after a warm-up, store the
    images/s under this CPU model in the runner's record and return them."""
    with torch.inference_mode():
        net.forward_features(torch_input[:2])
        t0 = time.perf_counter()
        net.forward_features(torch_input)
        t_torch = time.perf_counter() - t0
    runner(x[:2].numpy())
    t0 = time.perf_counter()
    runner(x.numpy())
    t_onnx = time.perf_counter() - t0
    speed = {"torch": round(len(x) / t_torch, 2), "onnx": round(len(x) / t_onnx, 2), "batch": len(x)}
    record = dict(runner.record)
    record.setdefault("speed", {})[_cpu_key()] = speed
    runner.record = record
    try:
        _write_record(runner.path.with_suffix(".json"), record)
    except OSError:  # a read-only cache still runs; it measures again next time
        pass
    return speed


# ----------------------------------------------------------------------------- internals


def _cpu_key() -> str:
    cpu = cpu_description()
    return f"{cpu['model']} x{cpu['cores']}"


def _digest(net, size, precision: str) -> str:
    import onnxruntime

    text = "|".join(
        [
            net.name,
            net.weights_id,
            "+".join(net.layers),
            f"{size[0]}x{size[1]}",
            f"torch {torch.__version__}",
            f"onnxruntime {onnxruntime.__version__}",
            precision,
            f"head{FLOAT_HEAD_CONVS}-tail{FLOAT_TAIL_CONVS}" if precision == "int8" else "",
            f"format {FORMAT}",
        ]
    )
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def _checked_record(path: Path, record_path: Path) -> dict | None:
    """The record of a complete export whose file matches its checksum, else None."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if record.get("format") != FORMAT or record.get("sha256") != file_sha256(path):
            log.warning("ONNX export %s does not match its record: exporting again", path)
            return None
        return record
    except (OSError, ValueError, AttributeError):
        return None


def _write_record(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(record), encoding="utf-8")
    os.replace(tmp, path)


def _normalised(net, images: np.ndarray, size) -> torch.Tensor:
    cfg = net.pretrained_cfg
    return to_float_batch(images, size, cfg.mean, cfg.std, interpolation=cfg.interpolation, channels_last=False)


def _export(net, size, precision: str, path: Path, record_path: Path) -> dict:
    import onnxruntime

    path.parent.mkdir(parents=True, exist_ok=True)
    if any(p.dtype != torch.float32 for p in net.parameters()):
        # a bf16 network (torch's choice on a CPU with native bf16): the graph and its
        # parity reference are float32, as ONNX Runtime computes
        import copy

        net = copy.deepcopy(net).float()
    calib = _normalised(net, calibration_images(size), size)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        was_training = net.training
        net.eval()
        try:
            export_module(_PooledFeatures(net), calib[:2].contiguous(), fp32, "images", "features")
        finally:
            net.train(was_training)
        made = _quantize(fp32, calib, Path(tmp)) if precision == "int8" else fp32
        with torch.inference_mode():
            reference = net.forward_features(calib).float().numpy()
        got = make_session(made, threads=torch.get_num_threads()).run(None, {"images": calib.numpy()})[0]
        cosine = _cosines(got, reference)
        passed = (
            bool(cosine.min() >= MIN_COSINE["fp32"])
            if precision == "fp32"
            else bool(cosine.mean() >= MIN_COSINE["int8"])
        )
        os.replace(made, path)
    record = {
        "format": FORMAT,
        "backbone": net.name,
        "weights": net.weights_id,
        "layers": list(net.layers),
        "input_size": list(size),
        "precision": precision,
        "float_convs": {"head": FLOAT_HEAD_CONVS, "tail": FLOAT_TAIL_CONVS} if precision == "int8" else None,
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "sha256": file_sha256(path),
        "export_seconds": round(time.perf_counter() - t0, 1),
        "parity": {
            "images": len(calib),
            "cosine_min": round(float(cosine.min()), 6),
            "cosine_mean": round(float(cosine.mean()), 6),
            "threshold": MIN_COSINE[precision],
            "criterion": "min" if precision == "fp32" else "mean",
            "passed": passed,
        },
        "speed": {},
    }
    _write_record(record_path, record)
    log.info("exported %s (%s) to %s: %s", net.name, precision, path, _parity_text(record))
    return record


def _quantize(fp32: Path, calib: torch.Tensor, tmp: Path) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    convs = [node.name for node in onnx.load(str(pre)).graph.node if node.op_type == "Conv"]
    keep_float = convs[:FLOAT_HEAD_CONVS] + convs[-FLOAT_TAIL_CONVS:]

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": calib[i : i + 8].numpy()} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp / "int8.onnx"
    quantize_static(
        str(pre),
        str(out),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep_float,
    )
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _parity_text(record: dict) -> str:
    p = record["parity"]
    return (
        f"{record['precision']} export of {record['backbone']}: cosine to torch min {p['cosine_min']:.4f},"
        f" mean {p['cosine_mean']:.4f} on {p['images']} images ({p['criterion']} must reach {p['threshold']})"
    )


def onnx_export_exists(net, size: tuple[int, int], folder: str | os.PathLike, precision: str = "fp32") -> bool:
    """Whether ``folder`` holds a checked export of ``net`` at ``size`` (nothing is exported)."""
    try:
        require_onnx()
    except ImportError:
        return False
    digest = _digest(net, size, precision)
    return _checked_record(Path(folder) / f"{digest}.onnx", Path(folder) / f"{digest}.json") is not None
