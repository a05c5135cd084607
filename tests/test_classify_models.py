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


def test_xray_preset_changes_exposure_sharpness_and_noise_but_not_the_side():
    from pixsort.classify.augment import AugmentConfig

    x = torch.zeros(8, 1, 32, 32)
    x[:, :, :, :8] = 0.8  # a bright band on the left of every image
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, get_augment("xray"), gen)
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    left, right = out[..., :, :10].mean(dim=(1, 2, 3)), out[..., :, 22:].mean(dim=(1, 2, 3))
    assert (left > right).all()  # no flips: the bright side stays on the left
    gamma = augment_batch(torch.full((64, 1, 4, 4), 0.5), AugmentConfig(gamma=0.3), torch.Generator().manual_seed(1))
    values = gamma[:, 0, 0, 0]
    assert float(values.min()) >= 0.5**1.3 - 1e-6 and float(values.max()) <= 0.5 ** (1 / 1.3) + 1e-6
    assert float(values.std()) > 0.02  # every image its own gamma
    edge = torch.zeros(4, 1, 16, 16)
    edge[..., 8:] = 1.0
    blurred = augment_batch(edge, AugmentConfig(blur=1.0, blur_sigma=1.5), torch.Generator().manual_seed(2))
    assert (blurred[..., 7] > 0.01).all() and (blurred[..., 7] < 0.99).all()  # the edge is softened
    assert torch.equal(blurred[..., 0], edge[..., 0])  # far from the edge nothing changes
    noisy = augment_batch(torch.full((4, 1, 16, 16), 0.5), AugmentConfig(noise=1.0), torch.Generator().manual_seed(3))
    assert 0.001 < float(noisy.std()) < 0.05
    assert not get_augment("xray").is_identity and AugmentConfig(blur_sigma=2.0).is_identity


def test_label_smoothing_and_mixup_change_the_loss_and_stay_seeded():
    from pixsort.classify.training import _loss_function

    y = torch.tensor([0, 1, 1, 0])
    logits = torch.tensor([[-4.0], [4.0], [3.0], [-3.0]])
    plain = _loss_function(np.array([0, 1]), 2, "none")(logits, y)
    smooth = _loss_function(np.array([0, 1]), 2, "none", smoothing=0.2)(logits, y)
    target = y.float() * 0.8 + 0.1
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target)
    assert torch.isclose(smooth, expected) and smooth > plain  # confident logits pay for smoothed targets

    from pixsort.classify.estimator import ImageClassifier
    from synthetic import two_class_arrays

    xt, yt, xv, yv = two_class_arrays(n_train=(30, 30), n_val=(10, 10))

    def fit(**kw):
        return ImageClassifier("seed-cnn", epochs=2, image_size=28, batch_size=16, progress=False, **kw).fit(
            xt, yt, xv, yv
        )

    a, b, plain_fit = fit(mixup=0.4, label_smoothing=0.1), fit(mixup=0.4, label_smoothing=0.1), fit()
    assert [h["train_loss"] for h in a.history_] == [h["train_loss"] for h in b.history_]  # seeded
    assert a.history_[0]["train_loss"] != plain_fit.history_[0]["train_loss"]
    assert a.train_config_["mixup"] == 0.4 and a.train_config_["label_smoothing"] == 0.1


def test_aspect_jitter_stretches_one_axis_and_squeezes_the_other():
    from pixsort.classify.augment import AugmentConfig

    x = torch.zeros(16, 1, 64, 64)
    x[..., 24:40, 24:40] = 1.0  # a centred 16 x 16 square
    out = augment_batch(x, AugmentConfig(aspect=0.5), torch.Generator().manual_seed(0)) > 0.5
    widths, heights = out.any(dim=2).sum(dim=(1, 2)).float(), out.any(dim=3).sum(dim=(1, 2)).float()
    assert (widths != heights).sum() >= 8  # most images are visibly stretched one way or the other
    assert (widths > heights).any() and (widths < heights).any()  # both ways
    assert torch.allclose(widths * heights, torch.full_like(widths, 256.0), rtol=0.25)  # area kept
    ratio = widths / heights
    assert float(ratio.max()) <= 1.5 * 1.15 and float(ratio.min()) >= 1 / (1.5 * 1.15)  # within the range


def test_views_train_on_every_view_and_predictions_average_over_them():
    from pixsort.classify.augment import apply_view, get_views
    from pixsort.classify.estimator import ImageClassifier
    from synthetic import two_class_arrays

    square = torch.zeros(1, 1, 40, 40)
    square[..., 12:28, 12:28] = 1.0
    wide = apply_view(square, 1.4) > 0.5
    assert wide.any(dim=2).sum() > wide.any(dim=3).sum()  # wider than tall
    assert torch.equal(apply_view(square, 1.0), square)

    xt, yt, xv, yv = two_class_arrays(n_train=(20, 20), n_val=(10, 10))
    seen = []
    clf = ImageClassifier("probe:efficientnet_lite0", pretrained=False, image_size=32, epochs=2, views="aspect",
                          progress=False)  # fmt: skip
    original = clf._train_config  # record how many rows the trainable part learns from

    def spy():
        cfg = original()
        seen.append(cfg.views)
        return cfg

    clf._train_config = spy
    clf.fit(xt, yt, xv, yv)
    assert seen == ["aspect"] and clf.train_config_["views"] == "aspect"
    # predict_proba averages the views exactly as the validation probabilities did
    np.testing.assert_allclose(clf.predict_proba(xv), clf.val_proba_, atol=1e-6)
    plain = ImageClassifier("probe:efficientnet_lite0", pretrained=False, image_size=32, epochs=2, progress=False)
    plain.fit(xt, yt, xv, yv)
    assert not np.allclose(plain.predict_proba(xv), clf.predict_proba(xv))
    assert len(get_views("aspect")) == 5
    with pytest.raises(ValueError, match="views need a frozen part"):
        ImageClassifier("seed-cnn", epochs=1, image_size=32, views="aspect", progress=False).fit(xt, yt, xv, yv)


def test_the_default_recipe_is_partial_lite0_with_xray_augmentation_and_a_sensitivity_threshold():
    from pixsort.classify.estimator import ImageClassifier
    from pixsort.classify.networks import DEFAULT_MODEL, RECIPES
    from synthetic import two_class_arrays

    assert ImageClassifier().model == DEFAULT_MODEL == "partial:efficientnet_lite0"
    recipe = RECIPES["partial"]
    assert (recipe.augment, recipe.label_smoothing, recipe.target_sensitivity) == ("xray", 0.1, 0.95)
    xt, yt, xv, yv = two_class_arrays(n_train=(20, 20), n_val=(10, 10))
    common = dict(pretrained=False, image_size=32, epochs=1, progress=False)
    auto = ImageClassifier(**common).fit(xt, yt, xv, yv)
    assert auto.threshold_info_["method"] == "sensitivity" and auto.threshold_info_["target_sensitivity"] == 0.95
    assert auto.train_config_["augment"]["aspect"] == 0.35 and auto.training_["cached_features"] is False
    youden = ImageClassifier(target_sensitivity=None, **common).fit(xt, yt, xv, yv)
    assert youden.threshold_info_["method"] == "youden"
