"""ONNX plumbing shared by every layer that runs a network through ONNX Runtime: a torch
module to an ONNX file (``torch.onnx.export(dynamo=True)``, a dynamic batch axis,
quietly) and an ONNX Runtime CPU session.  torch and the ``export`` extra are imported
only when used."""

from __future__ import annotations

import logging
import os
import warnings

from pixsort.base.runtime import available_cores

EXPORTER = "torch.onnx.export(dynamo=True)"
INSTALL_HINT = "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'pixsort[export]'"


def onnx_available() -> bool:
    """Whether onnx, onnxscript and onnxruntime import (the ``export`` extra)."""
    try:
        require_onnx()
    except ImportError:
        return False
    return True


def require_onnx() -> None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError as exc:
            raise ImportError(f"{INSTALL_HINT} ({exc})") from exc


def export_module(
    module,
    example,
    path: str | os.PathLike,
    input_name: str,
    output_name: str,
    opset: int | None = None,
) -> None:
    """``module(example)`` as the ONNX file ``path``: the batch axis dynamic, weights inside
    the file, the exporter's warnings (torchvision ops, its internals) silenced.  Errors
    come back as RuntimeError with the exporter's first line."""
    import torch

    require_onnx()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes={next(iter(_forward_args(module))): {0: batch}},
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter's own errors are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RuntimeError(f"torch.onnx.export failed: {type(exc).__name__}: {first}") from exc
    finally:
        onnx_logger.setLevel(level)


def _forward_args(module) -> list[str]:
    import inspect

    return [p for p in inspect.signature(module.forward).parameters if p != "self"]


def make_session(path: str | os.PathLike, threads: int | None = None):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads (default:
    the available cores) and one inter-op thread."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or available_cores())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


__all__ = ["EXPORTER", "INSTALL_HINT", "export_module", "make_session", "onnx_available", "require_onnx"]
