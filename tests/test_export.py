"""ONNX export of classifiers: one graph from uint8 images to ``predict_proba``'s
probabilities, checked against torch before it is kept.

Synthetic and small (no ../shared): a seed CNN fitted for one epoch on grey 40x40
images (so the graph holds the channel repeat and the antialiased shrink to 32 px,
and TTA), and ``probe:efficientnet_lite0`` with random weights (binary and 3-class),
its head scaled up so the probabilities spread out and a wrong graph shows.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pixsort.classify import export as export_module
from pixsort.classify.augment import to_float
from pixsort.classify.estimator import ImageClassifier
from pixsort.classify.export import ExportError, OnnxClassifier, export_onnx, make_session, onnx_proba
from pixsort.data import DecodeSettings
from synthetic import blob_image

ATOL = 1e-4


def blobs(n: int, hw: tuple[int, int], channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return np.stack([blob_image(int(c), hw, rng, channels) for c in y]), y


def fp32_torch(clf: ImageClassifier, images: np.ndarray) -> np.ndarray:
    """What predict_proba computes, in float32 (the reference the export is held to)."""
    frozen, trainable = clf.network_.frozen_precision, clf.network_.trainable_precision
    clf.network_.set_precision("fp32")
    try:
        return clf.predict_proba(images)
    finally:
        clf.network_.frozen_precision, clf.network_.trainable_precision = frozen, trainable


@pytest.fixture(scope="module")
def seed_cnn() -> ImageClassifier:
    """seed-cnn on grey 40x40 images, network input 32 px, TTA on."""
    x, y = blobs(48, (40, 40), 1, seed=0)
    xv, yv = blobs(24, (40, 40), 1, seed=1)
    clf = ImageClassifier("seed-cnn", epochs=1, image_size=32, tta=True, progress=False)
    return clf.fit(x, y, xv, yv, decode_settings=DecodeSettings(size=40, channels="L"))


def probe(n_classes: int) -> ImageClassifier:
    rng = np.random.default_rng(n_classes)
    x = rng.integers(0, 256, (12 * n_classes, 48, 48, 3), dtype=np.uint8)
    y = np.arange(len(x)) % n_classes
    clf = ImageClassifier(
        "probe:efficientnet_lite0", pretrained=False, image_size=64, epochs=2, precision="fp32", progress=False
    ).fit(x, y, x[: 6 * n_classes], y[: 6 * n_classes])
    # a random backbone's features hardly depend on the image (its BatchNorm statistics are
    # the initial 0 and 1): measure them on these images, and give the head weights that
    # turn the differences into spread-out probabilities
    net = clf.network_
    with torch.no_grad():
        for m in net.frozen.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
                m.train()
        net.features(to_float(x))
        net.frozen.eval()
        head = net.trainable[-1]
        head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.2)
        head.bias.sub_(net(to_float(x)).mean(0))  # centred: neither class wins everywhere
    return clf


def check_images(shape: tuple[int, int, int], n: int, seed: int) -> np.ndarray:
    """Images the export never saw: half blobs, half noise."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    noise = rng.integers(0, 256, (n - n // 2, h, w, c), dtype=np.uint8)
    return np.concatenate([np.stack([blob_image(i % 2, (h, w), rng, c) for i in range(n // 2)]), noise])


def test_seed_cnn_export_answers_like_predict_proba_at_any_batch_size(seed_cnn, tmp_path):
    path = tmp_path / "seed.onnx"
    record = seed_cnn.export_onnx(path)
    assert path.exists() and record["file"] == "seed.onnx"
    assert json.loads((tmp_path / "seed.onnx.json").read_text()) == json.loads(json.dumps(record))
    assert record["input"]["shape"] == ["batch", 40, 40, 1] and record["output"]["shape"] == ["batch", 2]
    assert record["parity"]["max_abs_diff"] <= ATOL and record["parity"]["batch_sizes"] == [1, 5]
    assert record["opset"] >= 18 and record["tta"] is True
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    session = make_session(path, threads=1)
    (inp,) = session.get_inputs()
    assert inp.type == "tensor(uint8)" and isinstance(inp.shape[0], str) and inp.shape[1:] == [40, 40, 1]
    images = check_images((40, 40, 1), 40, seed=5)
    expected = fp32_torch(seed_cnn, images)
    assert expected[:, 1].std() > 0.01  # a model that answers differently for different images
    for n in (1, 5, 7, 40):  # the batch axis is dynamic
        got = onnx_proba(session, images[:n])
        assert got.shape == (n, 2)
        np.testing.assert_allclose(got, expected[:n], atol=ATOL, rtol=0)
    np.testing.assert_allclose(onnx_proba(session, images).sum(1), 1.0, atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_probe_efficientnet_lite0_export_parity(n_classes, tmp_path):
    clf = probe(n_classes)
    path = tmp_path / "probe.onnx"
    record = export_onnx(clf, path)
    assert record["output"]["shape"] == ["batch", n_classes] and record["parity"]["max_abs_diff"] <= ATOL
    images = check_images((48, 48, 3), 9, seed=n_classes)
    expected = clf.predict_proba(images)  # precision fp32: torch's own answers are the reference
    assert expected.std(axis=0).max() > 0.05, "probabilities too uniform for the parity to mean anything"
    onnx_clf = OnnxClassifier(clf, path, threads=1)
    got = onnx_clf.predict_proba(images, batch_size=4)  # batches of 4, 4, 1
    assert got.shape == (9, n_classes) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(onnx_clf.predict(images), clf.predict(images))
    assert onnx_clf.classes_ == clf.classes_ and onnx_clf.threshold_ == clf.threshold_


def test_an_export_that_does_not_match_torch_is_not_written(seed_cnn, tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"an earlier export")
    real = export_module.onnx_proba

    def off_by_a_little(session, images):  # a graph whose answers drift by 2e-4
        return real(session, images) + 2e-4

    monkeypatch.setattr(export_module, "onnx_proba", off_by_a_little)
    with pytest.raises(ExportError, match=r"differ from torch's by up to 0\.0002.*tolerance 0\.0001.*not written"):
        seed_cnn.export_onnx(path)
    assert path.read_bytes() == b"an earlier export"  # the old file is left as it was
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # no temporary, no record

    monkeypatch.setattr(export_module, "onnx_proba", lambda session, images: real(session, images)[:, :1])
    with pytest.raises(ExportError, match="answered"):
        seed_cnn.export_onnx(tmp_path / "other.onnx")
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]


def test_the_check_batches_are_what_the_parity_is_computed_on(seed_cnn, tmp_path, monkeypatch):
    """Given check images are compared too; a batch the graph gets wrong refuses the file."""
    images = check_images((40, 40, 1), 3, seed=9)
    record = seed_cnn.export_onnx(tmp_path / "a.onnx", images=images)
    assert record["parity"]["batch_sizes"] == [1, 5, 3]
    with pytest.raises(ValueError, match="check images must be uint8"):
        seed_cnn.export_onnx(tmp_path / "b.onnx", images=images[:, :20])
    real = export_module.onnx_proba

    def wrong_on_the_third_batch(session, batch):
        out = real(session, batch)
        return out[:, ::-1].copy() if len(batch) == 3 else out

    monkeypatch.setattr(export_module, "onnx_proba", wrong_on_the_third_batch)
    with pytest.raises(ExportError, match=r"batches of \[1, 5, 3\]"):
        seed_cnn.export_onnx(tmp_path / "c.onnx", images=images)
    assert not (tmp_path / "c.onnx").exists()


def test_pixsort_export_command(seed_cnn, tmp_path):
    from pixsort.cli import app
    from pixsort.cluster.images import ImageClusterer

    folder = seed_cnn.save(tmp_path / "run" / "model")
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"exported: {folder / 'model.onnx'}" in text and "max |diff|" in text
    record = json.loads((folder / "model.onnx.json").read_text())
    assert record["parity"]["max_abs_diff"] <= ATOL and record["onnxruntime_version"]
    assert "model.onnx" not in json.loads((folder / "model.json").read_text()).get("params", {})

    out = tmp_path / "elsewhere" / "xray.onnx"
    result = runner.invoke(app, ["export", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and (tmp_path / "elsewhere" / "xray.onnx.json").exists()

    refused = runner.invoke(app, ["export", str(folder), "--format", "tflite"])
    assert refused.exit_code == 2 and "unknown export format 'tflite'" in refused.output

    x = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    ImageClusterer(features="pixels", n_clusters=2, progress=False).fit(x).save(tmp_path / "clusters")
    refused = runner.invoke(app, ["export", str(tmp_path / "clusters")])
    assert refused.exit_code == 2 and "only classifiers are exported" in " ".join(refused.output.split())


# -- the frozen part through ONNX Runtime while training ----------------------------------------


@pytest.fixture(scope="module")
def partial_net():
    """partial:efficientnet_lite0 with its packaged ImageNet weights at 64 px, float32."""
    from pixsort.classify.networks import build_network, make_spec

    net = build_network(make_spec("partial:efficientnet_lite0", 1, 64), pretrained=True).eval()
    return net.set_precision("fp32")


def test_frozen_runner_gives_torchs_features_and_only_where_it_should(partial_net, monkeypatch):
    from pixsort.classify import onnxrt

    images = check_images((64, 64, 3), 6, seed=4)
    runner = onnxrt.frozen_runner(partial_net, images[:3], n_images=10_000)
    assert runner is not None and runner.name == "onnxruntime"
    with torch.inference_mode():
        expected = partial_net.features(to_float(images))
    got = runner(images)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    assert expected.std() > 0.1  # real features, not a constant

    assert onnxrt.frozen_runner(partial_net, images[:3], n_images=100) is None  # not worth an export
    partial_net.set_precision("bf16")  # bf16 autocast computes other numbers: torch keeps it
    try:
        assert onnxrt.frozen_runner(partial_net, images[:3], n_images=10_000) is None
    finally:
        partial_net.set_precision("fp32")
    monkeypatch.setattr(onnxrt.FrozenRunner, "__call__", lambda self, batch: torch.zeros(len(batch), 1))
    assert onnxrt.frozen_runner(partial_net, images[:3], n_images=10_000) is None  # disagrees: not used
    monkeypatch.setattr(onnxrt, "onnx_available", lambda: False)
    assert onnxrt.frozen_runner(partial_net, images[:3], n_images=10_000) is None


def test_training_caches_the_frozen_part_with_onnxruntime_to_the_same_model(monkeypatch):
    from pixsort.classify import onnxrt

    x, y = blobs(40, (64, 64), 3, seed=2)
    xv, yv = blobs(20, (64, 64), 3, seed=3)

    def fit(min_images: int) -> ImageClassifier:
        monkeypatch.setattr(onnxrt, "FROZEN_MIN_IMAGES", min_images)
        clf = ImageClassifier(
            "partial:efficientnet_lite0", image_size=64, epochs=2, precision="fp32", augment="none", progress=False
        )  # fmt: skip  (no augmentation: the frozen part is cached)
        return clf.fit(x, y, xv, yv)

    by_torch, by_onnx = fit(10**9), fit(0)
    assert by_torch.training_["features_runtime"] == "torch"
    assert by_onnx.training_["features_runtime"] == "onnxruntime"
    np.testing.assert_allclose(by_onnx.val_proba_, by_torch.val_proba_, atol=1e-3, rtol=0)
    assert [r["train_loss"] for r in by_onnx.history_] == pytest.approx(
        [r["train_loss"] for r in by_torch.history_], abs=1e-3
    )
    # the threshold was chosen on probabilities predict_proba reproduces
    np.testing.assert_allclose(by_onnx.predict_proba(xv), by_onnx.val_proba_, atol=1e-4, rtol=0)
