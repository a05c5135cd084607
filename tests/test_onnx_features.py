"""Backbone embeddings through ONNX Runtime (features.onnxgraph): exported once, checked
against torch, chosen by measurement, and the runtime / device / precision settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pixsort.base.onnx import onnx_available
from pixsort.features import onnxgraph
from pixsort.features.embed import PretrainedExtractor

pytestmark = pytest.mark.skipif(not onnx_available(), reason="needs the export extra (onnx, onnxruntime)")


def _images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, 1, 1, 3), dtype=np.uint8)
    noise = rng.integers(0, 40, size=(n, 48, 48, 3), dtype=np.uint8)
    return (base + noise).astype(np.uint8)


def _cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """One fp32 export of Lite0 for the module (~20 s)."""
    folder = tmp_path_factory.mktemp("onnx")
    PretrainedExtractor("efficientnet_lite0", runtime="onnx", export_dir=folder, progress=False).transform(_images(2))
    return folder


@pytest.fixture(scope="module")
def torch_features():
    # the reference: torch in float32 (on a CPU with native bf16, "auto" would be bf16)
    return PretrainedExtractor("efficientnet_lite0", runtime="torch", precision="fp32", progress=False).transform(
        _images()
    )


@pytest.fixture
def fp32_cpu(monkeypatch):
    """A CPU without native bf16, where "auto" weighs torch fp32 against ONNX Runtime."""
    from pixsort.features import embed as embed_module

    monkeypatch.setattr(embed_module, "native_bf16", lambda: False)


def _record_path(folder):
    (path,) = list(folder.glob("*.json"))
    return path


def test_onnx_runtime_gives_torch_features_and_records_the_check(export_dir, torch_features):
    extractor = PretrainedExtractor("efficientnet_lite0", runtime="onnx", export_dir=export_dir, progress=False)
    got = extractor.transform(_images())
    assert extractor.runtime_ == "onnx"
    assert _cosines(got, torch_features).min() >= 0.999
    assert (
        extractor.extractor_id
        == PretrainedExtractor("efficientnet_lite0", runtime="torch", precision="fp32").extractor_id
    )
    record = json.loads(_record_path(export_dir).read_text())
    assert record["parity"]["passed"] is True and record["parity"]["cosine_min"] >= 0.999
    assert record["precision"] == "fp32" and record["backbone"] == "efficientnet_lite0"
    assert len(list(export_dir.glob("*.onnx"))) == 1  # reused, not exported again


def test_a_batch_larger_than_a_session_run_is_split_in_order(export_dir, monkeypatch):
    extractor = PretrainedExtractor("efficientnet_lite0", runtime="onnx", export_dir=export_dir, progress=False)
    images = np.concatenate([_images(6, seed) for seed in range(4)])  # 24 distinct images
    runner = extractor._onnx_runner(images, len(images))
    x = extractor._float_batch(images, channels_last=False).numpy()
    whole = runner.session.run(None, {"images": x})[0]
    runs = []
    original = runner.session.run
    monkeypatch.setattr(runner.session, "run", lambda *a, **kw: runs.append(len(a[1]["images"])) or original(*a, **kw))
    monkeypatch.setattr(onnxgraph, "SESSION_BATCH", 5)
    got = runner(x)
    assert runs == [5, 5, 5, 5, 4]  # the arena is sized by the largest run, not the batch
    np.testing.assert_allclose(got, whole, rtol=1e-4, atol=1e-5)


def test_a_damaged_export_is_noticed_and_made_again(export_dir, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in export_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (onnx_file,) = folder.glob("*.onnx")
    with open(onnx_file, "ab") as handle:
        handle.write(b"tampered")
    net = PretrainedExtractor("efficientnet_lite0").backbone_
    assert not onnxgraph.onnx_export_exists(net, (224, 224), folder)
    runner = onnxgraph.load_onnx_features(net, (224, 224), folder)
    assert not runner.path.read_bytes().endswith(b"tampered")
    assert onnxgraph.onnx_export_exists(net, (224, 224), folder)


def _set_speed(folder, torch_speed, onnx_speed):
    path = _record_path(folder)
    record = json.loads(path.read_text())
    record["speed"] = {onnxgraph._cpu_key(): {"torch": torch_speed, "onnx": onnx_speed, "batch": 32}}
    path.write_text(json.dumps(record))


def test_auto_takes_onnx_only_where_it_measured_faster(export_dir, tmp_path, torch_features, fp32_cpu):
    images = _images()
    _set_speed(export_dir, torch_speed=50.0, onnx_speed=20.0)
    slow = PretrainedExtractor("efficientnet_lite0", export_dir=export_dir, progress=False)
    slow.transform(images)
    assert slow.runtime_ == "torch"
    _set_speed(export_dir, torch_speed=20.0, onnx_speed=50.0)
    fast = PretrainedExtractor("efficientnet_lite0", export_dir=export_dir, progress=False)
    assert _cosines(fast.transform(images), torch_features).min() >= 0.999
    assert fast.runtime_ == "onnx"
    # few images and no export yet: not worth one
    empty = tmp_path / "none"
    few = PretrainedExtractor("efficientnet_lite0", export_dir=empty, progress=False)
    few.transform(images)
    assert few.runtime_ == "torch" and not empty.exists()


def test_auto_measures_speed_once_per_cpu_when_none_is_recorded(export_dir, monkeypatch, fp32_cpu):
    path = _record_path(export_dir)
    record = json.loads(path.read_text())
    record["speed"] = {}
    path.write_text(json.dumps(record))
    extractor = PretrainedExtractor("efficientnet_lite0", export_dir=export_dir, progress=False)
    extractor.transform(_images())
    speed = json.loads(path.read_text())["speed"][onnxgraph._cpu_key()]
    assert speed["torch"] > 0 and speed["onnx"] > 0
    assert extractor.runtime_ == ("onnx" if speed["onnx"] >= 1.1 * speed["torch"] else "torch")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"runtime": "tensorrt"}, "runtime must be one of"),
        ({"precision": "int4"}, "precision must be one of"),
        ({"precision": "int8", "runtime": "torch"}, "int8"),
        ({"device": "tpu"}, "device must be one of"),
    ],
)
def test_bad_runtime_settings_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        PretrainedExtractor("efficientnet_lite0", **params).transform(_images(1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_device_the_machine_lacks_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="not available"):
        PretrainedExtractor("efficientnet_lite0", device="cuda").transform(_images(1))
    assert next(PretrainedExtractor("efficientnet_lite0", device="auto").backbone_.parameters()).device.type == "cpu"


def test_the_clusterer_passes_runtime_settings_to_its_extractor():
    from pixsort.cluster.images import ImageClusterer
    from pixsort.features.extract import build_extractor

    spec = ImageClusterer(runtime="torch", device="cpu", precision="fp32").check_params()
    extractor = build_extractor(spec)
    assert (extractor.runtime, extractor.device, extractor.precision) == ("torch", "cpu", "fp32")
    with pytest.raises(ValueError):
        ImageClusterer(runtime="gpu").check_params()


@pytest.mark.slow
def test_int8_export_meets_its_parity_and_has_its_own_cache_id(tmp_path, torch_features):
    extractor = PretrainedExtractor("efficientnet_lite0", precision="int8", export_dir=tmp_path, progress=False)
    got = extractor.transform(_images())
    assert extractor.runtime_ == "onnx"
    assert "/int8/" in extractor.extractor_id
    assert extractor.extractor_id != PretrainedExtractor("efficientnet_lite0").extractor_id
    assert _cosines(got, torch_features).mean() >= 0.98  # checked at export on photos: mean >= 0.99
    record = json.loads(_record_path(tmp_path).read_text())
    assert record["parity"]["passed"] and record["parity"]["cosine_mean"] >= 0.99


def test_onnx_runtime_with_auto_precision_computes_float32_on_a_bf16_cpu(export_dir, monkeypatch):
    from pixsort.features import embed as embed_module

    monkeypatch.setattr(embed_module, "native_bf16", lambda: True)
    assert (
        PretrainedExtractor("efficientnet_lite0", runtime="torch", progress=False)._prepared()[1].dtype
        == torch.bfloat16
    )
    extractor = PretrainedExtractor("efficientnet_lite0", runtime="onnx", export_dir=export_dir, progress=False)
    assert extractor._prepared()[1].dtype == torch.float32
    assert extractor.transform(_images(2)).shape[0] == 2 and extractor.runtime_ == "onnx"
    auto = PretrainedExtractor("efficientnet_lite0", export_dir=export_dir, progress=False)
    auto.transform(_images(2))
    assert auto.runtime_ == "torch"  # auto: bf16 torch, ONNX Runtime not weighed
