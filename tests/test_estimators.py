"""scikit-learn habits of every estimator, and the shared pieces of the base layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from pixsort.base.errors import ModelFileError, NotFittedError
from pixsort.base.jsonio import dumps, jsonable
from pixsort.base.modelfile import model_folder, read_model_folder, read_model_meta, write_model_folder
from pixsort.classify.estimator import ImageClassifier
from pixsort.cluster.images import ImageClusterer
from pixsort.cluster.table import TableClusterer
from pixsort.data import holdout

ESTIMATORS = [
    (ImageClusterer, {"features": "pixels", "n_clusters": 3, "smoothing": 0}),
    (ImageClassifier, {"model": "seed-cnn", "epochs": 1}),
    (TableClusterer, {"method": "kmeans", "n_clusters": 3, "stability_runs": 0}),
]


@pytest.mark.parametrize("cls, params", ESTIMATORS)
def test_get_params_come_from_the_signature_and_clone_and_set_params_work(cls, params):
    est = cls(**params)
    names = set(est.get_params())
    assert names == set(cls._get_param_names())  # every __init__ argument, nothing else
    assert set(cls._parameter_constraints) == names  # and every one has its constraints
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    est.set_params(random_state=7)
    assert est.get_params()["random_state"] == 7 and twin.get_params()["random_state"] == 0


@pytest.mark.parametrize("cls, params", ESTIMATORS)
def test_init_only_stores_and_fit_validates(cls, params):
    # any value is stored as given (so set_params and clone never see derived state) ...
    est = cls(**params, random_state=-1)
    assert est.get_params()["random_state"] == -1
    assert not [k for k in vars(est) if k.endswith("_") or k.startswith("_")]  # nothing fitted, nothing derived
    # ... and refused, naming the parameter, when fit starts
    X = np.zeros((6, 8, 8, 3), np.uint8) if cls is not TableClusterer else np.zeros((6, 4))
    with pytest.raises(ValueError, match="'random_state' parameter"):
        est.fit(X, [0, 1, 0, 1, 0, 1]) if cls is ImageClassifier else est.fit(X)


@pytest.mark.parametrize("cls, params", ESTIMATORS)
def test_one_not_fitted_error_for_every_estimator(cls, params):
    est = cls(**params)
    X = np.zeros((2, 8, 8, 3), np.uint8) if cls is not TableClusterer else np.zeros((2, 4))
    with pytest.raises(NotFittedError, match=f"this {cls.__name__} is not fitted"):
        est.predict(X)
    assert issubclass(NotFittedError, SklearnNotFittedError)


def test_a_set_param_takes_effect_at_the_next_fit(rng):
    images = np.concatenate([rng.integers(0, 40, (20, 8, 8, 3)), rng.integers(200, 255, (20, 8, 8, 3)),
                             rng.integers(100, 140, (20, 8, 8, 3))]).astype(np.uint8)  # fmt: skip
    cl = ImageClusterer(features="pixels", n_clusters=2, smoothing=0, progress=False).fit(images)
    assert cl.n_clusters_ == 2
    assert cl.set_params(n_clusters=3).fit(images).n_clusters_ == 3
    assert cl.decode_settings.size == (8, 8)  # from the images it was fitted on


def test_model_folder_helper_checks_format_kind_and_weights(tmp_path):
    folder = write_model_folder(tmp_path / "m", "clusterer", {"answer": np.int64(42)}, {"w": np.ones(3, np.float32)})
    meta = read_model_meta(folder, "clusterer")
    assert meta["format"] == "pixsort-model" and meta["kind"] == "clusterer" and meta["answer"] == 42
    _, again, tensors = read_model_folder(folder, "clusterer")
    assert again == meta and tensors["w"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ModelFileError, match="holds a clusterer, not a classifier"):
        read_model_meta(folder, "classifier")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model").symlink_to(folder)
    assert model_folder(tmp_path / "run") == tmp_path / "run" / "model"  # a train/cluster --out folder works too
    (folder / "weights.safetensors").write_bytes(b"truncated")
    with pytest.raises(ModelFileError, match="weights.safetensors"):
        read_model_folder(folder, "clusterer")
    (folder / "model.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelFileError, match="not a pixsort model"):
        read_model_meta(folder)


def test_one_json_encoding():
    value = {"a": np.float32(0.5), "b": (1, np.int64(2)), "c": np.arange(2), "d": float("nan")}
    assert json.loads(dumps(value))["b"] == [1, 2]
    assert jsonable(value) == {"a": 0.5, "b": [1, 2], "c": [0, 1], "d": value["d"]}
    assert jsonable(value, finite=True)["d"] is None  # strict JSON for HTTP answers


def test_one_holdout_for_sources_and_arrays():
    from pixsort.data.sources import ImageDataset
    from pixsort.data.split import carve_validation

    labels = np.array([0] * 30 + [1] * 70)
    train, val = holdout(labels, 0.2, random_state=3)
    assert len(val) == 20 and np.bincount(labels[val]).tolist() == [6, 14]  # stratified
    assert set(train) | set(val) == set(range(100)) and not set(train) & set(val)
    ds = ImageDataset(root=None, kind="flat", paths=[f"{i}.png" for i in range(100)], labels=labels,
                      class_names=["a", "b"], splits=np.full(100, "", dtype=object))  # fmt: skip
    carved = carve_validation(ds, 0.2, random_state=3)
    np.testing.assert_array_equal(np.flatnonzero(carved.splits == "val"), val)  # the same split both ways
    groups = np.repeat(np.arange(25), 4)  # four images per patient
    _, gval = holdout(labels, 0.2, random_state=3, groups=groups)
    assert all(set(np.flatnonzero(groups == g)) <= set(gval) for g in set(groups[gval]))  # whole groups only
