"""path_norm with a BatchNorm that has no affine parameters (Jiang et al. 2020, #44: every parameter of the
BN-folded network squared, the shift a folded BN leaves included)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gnsel.measures.norms import path_norm_value


def _bn_stats(bn: nn.modules.batchnorm._BatchNorm, mean: list[float], var: list[float]) -> None:
    bn.running_mean.copy_(torch.tensor(mean))
    bn.running_var.copy_(torch.tensor(var))


def _conv_net(affine: bool) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2, affine=affine), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * 4 * 4, 3),
    )  # fmt: skip
    _bn_stats(net[1], [0.3, -0.7], [0.5, 2.0])
    if affine:  # the equivalent affine BN: weight 1, bias 0 (the defaults, set explicitly)
        with torch.no_grad():
            net[1].weight.fill_(1.0)
            net[1].bias.zero_()
    return net


def test_affine_free_batchnorm_after_a_bias_free_conv_squares_its_shift() -> None:
    free, affine = _conv_net(False), _conv_net(True)
    x = torch.randn(2, 1, 6, 6)
    free.eval(), affine.eval()
    torch.testing.assert_close(free(x), affine(x))  # the same function
    assert path_norm_value(free, (1, 6, 6)) == pytest.approx(path_norm_value(affine, (1, 6, 6)), rel=1e-12)


def test_affine_free_batchnorm1d_by_hand() -> None:
    """Linear(1 -> 1, no bias, w=2) -> BN1d(affine=False; mean 3, var 4 - eps) -> ReLU -> Linear(1 -> 1, w=1, b=0).

    Folded: scale s = 1/2, weight s w = 1, shift -s mu = -1.5; squared: 1 * 1 + 1.5^2 = 3.25 on input 1.
    """
    def net(affine: bool) -> nn.Module:
        first, bn, last = nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1, affine=affine), nn.Linear(1, 1)
        with torch.no_grad():
            first.weight.fill_(2.0)
            last.weight.fill_(1.0)
            last.bias.zero_()
        _bn_stats(bn, [3.0], [4.0 - bn.eps])
        return nn.Sequential(first, bn, nn.ReLU(), last)

    assert path_norm_value(net(False), (1,)) == pytest.approx(3.25, rel=1e-12)
    assert path_norm_value(net(True), (1,)) == pytest.approx(3.25, rel=1e-12)


def test_model_is_left_unchanged() -> None:
    net = _conv_net(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path_norm_value(net, (1, 6, 6))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
