"""Where a classifier runs: ``select_device`` (``auto`` | ``cpu`` | ``cuda`` | ``mps``), the
``device`` parameter of ImageClassifier and ``--device`` of train, evaluate and predict.

The GPU branches are tested on a CPU machine by making torch *say* a GPU is there
(monkeypatched ``torch.cuda.is_available`` / ``torch.backends.mps.is_available``);
nothing here allocates on a GPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pixsort.base.runtime import DEVICES, select_device
from pixsort.classify.estimator import RUN_PARAMS, ImageClassifier
from synthetic import two_class_arrays


def fake_devices(monkeypatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_takes_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    fake_devices(monkeypatch, cuda, mps)
    assert select_device("auto") == torch.device(expected)
    assert select_device() == torch.device(expected)  # auto is the default


def test_a_named_device_is_used_when_it_is_there(monkeypatch):
    fake_devices(monkeypatch, cuda=True, mps=True)
    assert [select_device(d) for d in ("cpu", "cuda", "mps")] == [torch.device(d) for d in ("cpu", "cuda", "mps")]


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_an_unavailable_device_is_a_clear_error_not_a_silent_cpu(monkeypatch, device):
    fake_devices(monkeypatch, cuda=False, mps=False)
    with pytest.raises(ValueError, match=f"device '{device}' is not available on this machine"):
        select_device(device)
    assert select_device("cpu") == torch.device("cpu")


def test_an_unknown_device_name_is_refused():
    with pytest.raises(ValueError, match="device must be one of"):
        select_device("gpu")
    assert DEVICES == ("auto", "cpu", "cuda", "mps")


def test_classifier_refuses_an_unavailable_device_before_training(monkeypatch):
    fake_devices(monkeypatch, cuda=False, mps=False)
    X = np.zeros((6, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="'cuda' is not available"):
        ImageClassifier("seed-cnn", epochs=1, device="cuda", progress=False).fit(X, [0, 1] * 3)
    with pytest.raises(ValueError, match="'device' parameter"):
        ImageClassifier("seed-cnn", device="gpu").check_params()


def _fit(device: str, X, y, Xv, yv) -> ImageClassifier:
    return ImageClassifier("seed-cnn", epochs=2, image_size=32, device=device, progress=False).fit(X, y, Xv, yv)


def test_cpu_training_and_inference_are_identical_to_the_default_path(monkeypatch, tmp_path):
    """device='cpu' and device='auto' on a machine without a GPU train bit-identical
    weights, losses and probabilities (the device moves are no-ops on the CPU), and a
    reload on 'cpu' answers the same; the device is a run setting, not saved."""
    fake_devices(monkeypatch, cuda=False, mps=False)
    xt, yt, xv, yv = two_class_arrays((40, 40), (20, 20), size=32)
    a, b = _fit("cpu", xt, yt, xv, yv), _fit("auto", xt, yt, xv, yv)
    state_a, state_b = a.network_.state_dict(), b.network_.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert [r["train_loss"] for r in a.history_] == [r["train_loss"] for r in b.history_]
    assert a.network_.device == torch.device("cpu")
    np.testing.assert_array_equal(a.predict_proba(xv), b.predict_proba(xv))
    np.testing.assert_array_equal(a.val_proba_, b.val_proba_)

    a.save(tmp_path / "m")
    assert "device" in RUN_PARAMS
    assert "device" not in json.loads((tmp_path / "m" / "model.json").read_text())["params"]
    again = ImageClassifier.load(tmp_path / "m", device="cpu")
    assert again.device == "cpu" and again.network_.device == torch.device("cpu")
    np.testing.assert_array_equal(again.predict_proba(xv), a.predict_proba(xv))


def test_a_saved_model_does_not_load_onto_a_device_that_is_not_there(monkeypatch, tmp_path):
    fake_devices(monkeypatch, cuda=False, mps=False)
    xt, yt, xv, yv = two_class_arrays((10, 10), (6, 6), size=16)
    ImageClassifier("seed-cnn", epochs=1, image_size=16, progress=False).fit(xt, yt, xv, yv).save(tmp_path / "m")
    with pytest.raises(ValueError, match="'mps' is not available"):
        ImageClassifier.load(tmp_path / "m", device="mps")


def test_cli_train_evaluate_predict_take_device(monkeypatch, tmp_path):
    from pixsort.cli import app

    fake_devices(monkeypatch, cuda=False, mps=False)
    xt, yt, xv, yv = two_class_arrays((30, 30), (30, 30), size=16)
    data = tmp_path / "blobs.npz"
    np.savez(data, train_images=xt[..., 0], train_labels=yt[:, None], val_images=xv[..., 0], val_labels=yv[:, None])
    runner = CliRunner()
    common = ["--cache-dir", str(tmp_path / "cache"), "--workers", "0"]
    refused = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "gpu"), "--epochs", "1", *common,
                                  "--device", "cuda"])  # fmt: skip
    assert refused.exit_code == 2 and "'cuda' is not available" in " ".join(refused.output.split())
    assert not (tmp_path / "gpu" / "model").exists()

    trained = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                                  "--image-size", "16", *common, "--device", "cpu"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    model = tmp_path / "run" / "model"
    evaluated = runner.invoke(app, ["evaluate", str(model), str(data), "--out", str(tmp_path / "ev"), *common,
                                    "--device", "cpu"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    predicted = runner.invoke(app, ["predict", str(model), str(data), "--out", str(tmp_path / "p.csv"), *common,
                                    "--device", "mps"])  # fmt: skip
    assert predicted.exit_code == 2 and "'mps' is not available" in " ".join(predicted.output.split())
    predicted = runner.invoke(app, ["predict", str(model), str(data), "--out", str(tmp_path / "p.csv"), *common,
                                    "--device", "cpu"])  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
