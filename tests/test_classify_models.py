"""Architectures by name, augmentation and oversampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixsort.classify.augment import AUGMENT_PRESETS, augment_batch, get_augment, oversample_minority, to_float
from pixsort.classify.networks import build_network, list_models, make_spec, parse_model_name


def test_seed_cnn_is_the_published_baseline():
    net = build_network(make_spec("seed-cnn", 1))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 4
    assert net.preprocess.input_size == (128, 128)
    # flatten of 8x8x256 into one sigmoid unit
    assert net.trainable[1][1].in_features == 8 * 8 * 256 and net.trainable[1][1].out_features == 1
    assert net(torch.rand(2, 3, 128, 128)).shape == (2, 1)


def test_seed_cnn_dropout_size_and_dropout():
    net = build_network(make_spec("seed-cnn-dropout", 1))
    n = net.n_parameters()
    assert 800_000 < n < 840_000  # the published ~823k
    drops = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 2 and all(d.p == 0.4 for d in drops)


@pytest.mark.parametrize("size", [28, 64])
def test_any_input_size_is_resized_inside(size):
    net = build_network(make_spec("seed-cnn", 3, image_size=32)).eval()
    assert net(torch.rand(2, 1, size, size)).shape == (2, 3)  # grey input, resized to 32


def test_model_names():
    assert parse_model_name("probe:efficientnet_lite0").family == "probe"
    assert parse_model_name("timm:resnet18").backbone == "timm:resnet18"
    assert parse_model_name("efficientnet_lite0").backbone == "efficientnet_lite0"
    assert "seed-cnn" in list_models() and "probe:efficientnet_lite0" in list_models()
    with pytest.raises(ValueError, match="unknown model"):
        parse_model_name("resnet9000")


def test_probe_freezes_backbone_and_upsamples_small_images():
    net = build_network(make_spec("probe:efficientnet_lite0", 1, image_size=64), pretrained=False)
    trainable = {id(p) for p in net.trainable.parameters()}
    assert all(not p.requires_grad for p in net.frozen.parameters())
    assert not trainable & {id(p) for p in net.frozen.parameters()}
    net.eval()
    assert net.features(torch.rand(2, 3, 28, 28)).shape == (2, 1280)
    net.train()
    assert not net.frozen.training  # frozen BatchNorm keeps its statistics


def test_finetune_has_discriminative_learning_rates():
    net = build_network(make_spec("finetune:efficientnet_lite0", 1, image_size=64), pretrained=False)
    groups = net.param_groups(1e-3, 0.01)
    rates = sorted({g["lr"] for g in groups})
    assert rates[-1] == pytest.approx(1e-3) and rates[0] < 1e-4
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in net.trainable.parameters())


def test_augmentation_is_seeded_and_stays_in_range():
    x = to_float(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    cfg = AUGMENT_PRESETS["strong"]
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    c = augment_batch(x, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(augment_batch(x, get_augment("none"), torch.Generator()), x)


def test_flip_only_augmentation_mirrors_exactly():
    from pixsort.classify.augment import AugmentConfig

    x = to_float(np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8))
    out = augment_batch(x, AugmentConfig(hflip=1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.flip(x, dims=[3]), atol=1e-5)


def test_oversampling_balances_with_augmented_copies():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 24, 24, 3), dtype=np.uint8)
    labels = np.array([0] * 8 + [1] * 22)
    new_x, new_y = oversample_minority(images, labels, get_augment("seed"), random_state=0)
    assert len(new_y) == 14 and (new_y == 0).all() and new_x.shape == (14, 24, 24, 3)
    again, _ = oversample_minority(images, labels, get_augment("seed"), random_state=0)
    assert np.array_equal(new_x, again)  # reproducible
    assert not any(np.array_equal(n, o) for n in new_x for o in images[:8])  # copies are augmented


def test_gradcam_maps_have_image_shape_and_follow_the_object():
    from pixsort.classify.gradcam import grad_cam, overlay

    torch.manual_seed(0)
    net = build_network(make_spec("seed-cnn", 1, image_size=32)).eval()
    # make the network respond to brightness: the map must then light up where the bright patch is
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.abs_()
                m.bias.zero_()
        net.trainable[1][1].weight.abs_()
    images = np.zeros((2, 32, 32, 3), np.uint8)
    images[0, :12, :12] = 255  # top-left
    images[1, 20:, 20:] = 255  # bottom-right
    maps, explained = grad_cam(net, images, classes=np.array([1, 1]))
    assert maps.shape == (2, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    assert maps[0, :12, :12].mean() > maps[0, 20:, 20:].mean()
    assert maps[1, 20:, 20:].mean() > maps[1, :12, :12].mean()
    assert overlay(images[0], maps[0]).shape == (32, 32, 3)


def test_timm_models_when_timm_is_installed():
    pytest.importorskip("timm")
    spec = make_spec("timm:resnet18", 1, image_size=64)
    net = build_network(spec, pretrained=False)
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 1)
