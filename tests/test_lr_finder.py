"""The learning-rate range test on its own: the schedule, the smoothing, the stopping
rule, the choice, and the exact restore of network, optimizer and random state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pixsort.classify.lr_finder import FLAT_RULE, RULE, lr_range_test, lr_schedule, smooth_losses, suggest_lr


def test_schedule_rises_exponentially_from_start_to_end():
    lrs = lr_schedule(1e-7, 10.0, 100)
    assert len(lrs) == 100 and lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = lrs[1:] / lrs[:-1]
    np.testing.assert_allclose(ratios, (1e8) ** (1 / 99))  # the same factor every step
    with pytest.raises(ValueError):
        lr_schedule(1.0, 0.1, 10)


def test_smoothed_loss_is_the_bias_corrected_moving_average():
    # beta 0.5: avg 0.5, 1.25, 2.125 over corrections 0.5, 0.75, 0.875
    np.testing.assert_allclose(smooth_losses([1.0, 2.0, 3.0], beta=0.5), [1.0, 1.25 / 0.75, 2.125 / 0.875])
    np.testing.assert_allclose(smooth_losses(np.full(50, 0.7)), 0.7)  # no bias towards 0 at the start


def test_choice_is_the_minimum_of_the_smoothed_loss_over_ten():
    lrs = lr_schedule(1e-7, 10.0, 100)
    curve = 1 + (np.log10(lrs) + 2) ** 2  # lowest at lr = 1e-2
    at_min = lrs[np.argmin(curve)]
    chosen, rule, suggestions = suggest_lr(lrs, curve)
    assert at_min == pytest.approx(1e-2, rel=0.1)
    assert chosen == pytest.approx(at_min / 10) and rule == RULE and suggestions["minimum"] == chosen
    # steepest descent per log lr: the parabola falls fastest at its left end
    assert suggestions["steepest"] == pytest.approx(lrs[0])
    # the window leaves out the first points: a dip there is noise, not the minimum
    noisy = curve.copy()
    noisy[3] = 0.0
    assert suggest_lr(lrs, noisy)[0] == pytest.approx(lrs[3] / 10)
    assert suggest_lr(lrs, noisy, skip_start=10, skip_end=5)[0] == pytest.approx(at_min / 10)
    # ... and the last ones: a final value below the minimum is the blow-up's noise
    tail = curve.copy()
    tail[-1] = 0.0
    assert suggest_lr(lrs, tail, skip_start=10, skip_end=5)[0] == pytest.approx(at_min / 10)
    # never below the floor
    rising = np.linspace(1, 3, 100)
    assert suggest_lr(lrs, rising)[0] == pytest.approx(lrs[0] / 10)
    assert suggest_lr(lrs, rising, floor=1e-7)[0] == pytest.approx(1e-7)


def test_a_flat_curve_keeps_the_default_learning_rate():
    lrs = lr_schedule(1e-7, 10.0, 100)
    flat = 0.693 + 0.001 * np.sin(np.arange(100))  # never 1% below its start
    chosen, rule, _ = suggest_lr(lrs, flat, skip_start=10, skip_end=5, default_lr=3e-3)
    assert (chosen, rule) == (3e-3, FLAT_RULE)
    falling = np.linspace(0.693, 0.5, 100)
    chosen, rule, _ = suggest_lr(lrs, falling, skip_start=10, skip_end=5, default_lr=3e-3)
    assert rule == RULE and chosen == pytest.approx(lrs[94] / 10)  # last point of the window


class _Probe:
    """A one-parameter problem whose loss is a function of the step's learning rate."""

    def __init__(self, loss_of_lr):
        self.net = nn.Linear(1, 1)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.loss_of_lr = loss_of_lr
        self.calls = 0

    def batch_loss(self) -> torch.Tensor:
        self.calls += 1
        lr = self.opt.param_groups[0]["lr"]
        return self.net.weight.sum() * 0 + float(self.loss_of_lr(lr))


def test_runs_all_steps_unless_the_smoothed_loss_exceeds_four_times_its_minimum():
    calm = _Probe(lambda lr: 1.0)
    result = lr_range_test(calm.net, calm.opt, calm.batch_loss)
    assert result.stopped == "completed" and len(result.lrs) == 100 == calm.calls
    np.testing.assert_allclose(result.lrs, lr_schedule(1e-7, 10.0, 100))

    blowing_up = _Probe(lambda lr: 1.0 + 1000.0 * lr)  # 1 until ~1e-4, then rising fast
    result = lr_range_test(blowing_up.net, blowing_up.opt, blowing_up.batch_loss)
    smoothed = smooth_losses([1.0 + 1000.0 * lr for lr in lr_schedule(1e-7, 10.0, 100)])
    over = smoothed > 4 * np.minimum.accumulate(smoothed)
    first = int(np.argmax(over))
    assert over.any() and result.stopped == "diverged"
    assert len(result.lrs) == first + 1  # the step that crossed the line is recorded, then it stops
    np.testing.assert_allclose(result.smoothed, smoothed[: first + 1])
    assert result.losses == pytest.approx([1.0 + 1000.0 * lr for lr in result.lrs])

    nan_after = _Probe(lambda lr: 1.0 if lr < 1e-3 else float("nan"))
    result = lr_range_test(nan_after.net, nan_after.opt, nan_after.batch_loss)
    assert result.stopped == "diverged" and max(result.lrs) < 1e-3 and np.isfinite(result.losses).all()


class _Net(nn.Module):
    """A layer with batch norm (buffers that change in training mode) and dropout
    (draws from the global random state)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3))
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(self.body(x))


def _snapshot(net: nn.Module, opt: torch.optim.Optimizer):
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        {
            pid: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in entries.items()}
            for pid, entries in opt.state_dict()["state"].items()
        },
        [dict(g) for g in opt.state_dict()["param_groups"]],
        [None if p.grad is None else p.grad.clone() for p in net.parameters()],
    )


def _assert_same(a, b) -> None:
    (net_a, state_a, groups_a, grads_a), (net_b, state_b, groups_b, grads_b) = a, b
    assert net_a.keys() == net_b.keys()
    for k in net_a:
        assert torch.equal(net_a[k], net_b[k]), k
    assert state_a.keys() == state_b.keys()
    for pid in state_a:
        for k in state_a[pid]:
            va, vb = state_a[pid][k], state_b[pid][k]
            assert torch.equal(va, vb) if torch.is_tensor(va) else va == vb, (pid, k)
    assert groups_a == groups_b
    assert all(torch.equal(ga, gb) for ga, gb in zip(grads_a, grads_b))


def test_network_optimizer_gradients_and_random_state_come_back_exactly():
    torch.manual_seed(0)
    net = _Net()
    groups = [
        {"params": list(net.body.parameters()), "lr": 1e-3, "lr_scale": 0.1},
        {"params": list(net.out.parameters()), "lr": 1e-2, "lr_scale": 1.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-2)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,)).float()
    for _ in range(3):  # an optimizer with moments and step counts to restore, and gradients left over
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y).backward()
        opt.step()
    net.eval()
    before = _snapshot(net, opt)
    rng_before = torch.get_rng_state()
    seen = {"ratios": set(), "moved": False, "trained": set()}
    start_weight = net.out.weight.detach().clone()

    def batch_loss():
        seen["ratios"].add(round(opt.param_groups[0]["lr"] / opt.param_groups[1]["lr"], 9))
        seen["moved"] |= not torch.equal(net.out.weight, start_weight)
        seen["trained"].add(net.training)
        return nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y)

    result = lr_range_test(net, opt, batch_loss)
    assert seen["moved"] and seen["trained"] == {True}  # the test did train, in training mode
    assert seen["ratios"] == {0.1}  # discriminative rates keep their ratio
    assert 1e-7 <= result.chosen <= 10.0 and result.rule in (RULE, FLAT_RULE)
    _assert_same(_snapshot(net, opt), before)
    assert torch.equal(torch.get_rng_state(), rng_before) and net.training is False
    assert result.to_dict()["chosen"] == result.chosen and len(result.to_dict()["lrs"]) == len(result.losses)
