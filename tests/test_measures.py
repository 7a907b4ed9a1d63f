"""Tests for the generalization-measure registry (gnsel.measures). Tiny networks, CPU only."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gnsel.measures as M
from gnsel import gradient_norm
from gnsel.measures import MeasureContext, compute_measure, get_measure, list_measures
from gnsel.measures import registry as registry_mod
from gnsel.measures import zero_cost as zc

EXPECTED = {
    "gn_full", "gn_fc", "mean_grad_sq", "grad_variance", "traj_gn",
    "val_loss", "val_error", "train_loss", "train_error", "budget", "num_params", "random",
    "log_prod_spectral", "log_sum_spectral", "log_prod_frobenius", "log_sum_frobenius", "dist_from_init",
    "param_norm", "path_norm", "inverse_margin", "path_norm_over_margin",
    "pacbayes_flatness", "pacbayes_mag_flatness",
    "grad_norm", "snip", "synflow", "jacob_cov", "nwot",
    "ww_alpha", "ww_alpha_weighted",
    "db_mixup",
}  # fmt: skip
ROW = {"epoch": 3, "val_loss": 0.7, "val_acc": 0.8, "train_loss": 0.2, "train_acc": 0.95, "traj_gn": 1.5, "steps": 40, "lr_sq_sum": 0.1, "n_train": 100}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ctx_for(model, x=None, y=None, **kw) -> MeasureContext:
    return MeasureContext(model=model.eval(), train_data=None if x is None else (x, y), **kw)


def linear(weight, bias=None) -> nn.Linear:
    weight = torch.as_tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


def clusters(n_per: int, dim: int, classes: int = 3, seed: int = 0, shape=None, spread: float = 3.0):
    """Gaussian clusters (unit noise around centres of scale ``spread``): inputs (n, dim) or ``shape``, labels."""
    g = torch.Generator().manual_seed(seed)
    centers = spread * torch.randn(classes, dim, generator=g)
    y = torch.arange(classes).repeat_interleave(n_per)
    x = centers[y] + torch.randn(len(y), dim, generator=g)
    perm = torch.randperm(len(y), generator=g)
    x, y = x[perm], y[perm]
    return (x if shape is None else x.reshape(len(y), *shape)), y


def fit(model: nn.Module, x, y, steps: int = 60, lr: float = 0.05) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained_mlp():
    from gnsel.models import create_model

    x, y = clusters(32, 10, spread=1.0)  # overlapping clusters: distinct ReLU codes for nwot
    torch.manual_seed(1)
    model = create_model("mlp", num_classes=3, input_shape=(10,), width=128, depth=2)
    init = copy.deepcopy(model)
    return fit(model, x, y), init, x, y


@pytest.fixture(scope="module")
def trained_cnn():
    from gnsel.models import create_model

    x, y = clusters(32, 144, shape=(1, 12, 12), seed=1, spread=1.0)
    torch.manual_seed(2)
    model = create_model("lenet5", num_classes=3, input_shape=(1, 12, 12), width_mult=0.5, batch_norm=True)
    init = copy.deepcopy(model)
    return fit(model, x, y, steps=40, lr=0.01), init, x, y


# ---------------------------------------------------------------------------------- registry
def test_registry_lists_every_measure_with_citation_and_needs():
    names = list_measures()
    assert set(names) == EXPECTED and names == sorted(names)
    for name in names:
        spec = get_measure(name)
        assert spec.name == name and callable(spec.fn)
        assert "," in spec.citation, (name, spec.citation)  # "Authors year, title"
        if name != "random":  # the control has no source
            assert re.search(r"\b(19|20)\d\d\b", spec.citation), (name, spec.citation)
        assert spec.needs <= M.NEEDS and isinstance(spec.needs, frozenset)
        assert spec.higher_means in M.HIGHER_MEANS
        assert spec.summary and spec.family
    assert set(list_measures("norm")) >= {"log_prod_spectral", "path_norm", "dist_from_init"}
    assert get_measure("dist_from_init").needs == {"weights", "init"}
    assert get_measure("traj_gn").needs == {"trajectory"}
    with pytest.raises(ValueError, match="unknown measure"):
        get_measure("nope")


def test_register_measure_validates_and_refuses_clashes():
    with pytest.raises(ValueError, match="needs"):
        M.register_measure("x_bad", citation="A 2020, T", needs={"gpu"}, higher_means="larger gap")
    with pytest.raises(ValueError, match="higher_means"):
        M.register_measure("x_bad", citation="A 2020, T", needs=set(), higher_means="up")
    with pytest.raises(ValueError, match="citation"):
        M.register_measure("x_bad", citation=" ", needs=set(), higher_means="larger gap")
    with pytest.raises(ValueError, match="already registered"):
        M.register_measure("gn_full", citation="A 2020, T", needs=set(), higher_means="larger gap")(lambda c: 0.0)


def test_missing_needs_and_failures_give_error_text_not_exceptions(trained_mlp):
    model, _, x, y = trained_mlp
    ctx = ctx_for(model, x, y)  # no init model, no row
    r = compute_measure("dist_from_init", ctx)
    assert math.isnan(r.value) and not r.ok and "missing needs" in r.error and "init" in r.error
    r = compute_measure("gn_full", MeasureContext(model=model))
    assert not r.ok and "data" in r.error
    r = compute_measure("val_loss", ctx)
    assert not r.ok and "metrics" in r.error
    r = compute_measure("traj_gn", MeasureContext(row={"traj_gn": float("nan")}))
    assert not r.ok and "trajectory" in r.error
    r = compute_measure("val_error", MeasureContext(row={"val_loss": 1.0}))  # metrics present, key missing
    assert not r.ok and "val_acc" in r.error
    # an unsupported layer: a transformer has embeddings, attention and LayerNorm
    from gnsel.models import create_model

    tr = create_model("transformer", num_classes=2, input_shape=(6,), d_model=8, n_heads=2, n_layers=1, dim_ff=8)
    tokens = torch.randint(0, 64, (8, 6))
    for name in ("log_prod_spectral", "path_norm", "synflow", "db_mixup"):
        r = compute_measure(name, ctx_for(tr, tokens, torch.zeros(8, dtype=torch.long)))
        assert not r.ok and ("unsupported" in r.error or "real-valued" in r.error), (name, r.error)
    # an exception inside a measure and a non-finite result
    M.register_measure("x_boom", citation="Nobody 2020, Boom", needs=set(), higher_means="nothing")(
        lambda c: 1 / 0
    )
    M.register_measure("x_inf", citation="Nobody 2020, Inf", needs=set(), higher_means="nothing")(
        lambda c: float("inf")
    )
    try:
        r = compute_measure("x_boom", MeasureContext())
        assert not r.ok and r.error.startswith("ZeroDivisionError")
        r = compute_measure("x_inf", MeasureContext())
        assert not r.ok and "non-finite" in r.error and math.isnan(r.value)
    finally:
        registry_mod.MEASURES.unregister("x_boom")
        registry_mod.MEASURES.unregister("x_inf")


def test_every_measure_runs_and_leaves_the_models_alone(trained_mlp, trained_cnn):
    for model, init, x, y in (trained_mlp, trained_cnn):
        before = copy.deepcopy(model.state_dict())
        torch.manual_seed(123)
        expect_rng = torch.rand(3)
        torch.manual_seed(123)
        ctx = ctx_for(model, x, y, init_model=init, row=dict(ROW), config={"model": "x"}, seed=0)
        results = M.compute_measures(ctx)
        assert torch.equal(torch.rand(3), expect_rng)  # the global RNG is untouched
        assert set(results) == EXPECTED
        bad = {n: r.error for n, r in results.items() if not r.ok}
        assert not bad, bad
        assert all(math.isfinite(r.value) and r.seconds >= 0 for r in results.values())
        assert not model.training and all(not m.training for m in model.modules())
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k


# ---------------------------------------------------------------------------------- norms
def test_spectral_norm_matches_numpy_svd():
    g = torch.Generator().manual_seed(0)
    for shape in [(7, 5), (3, 9), (4, 3, 3, 3), (6, 2, 5)]:
        w = torch.randn(*shape, generator=g)
        expected = np.linalg.svd(w.reshape(shape[0], -1).numpy().astype(np.float64), compute_uv=False).max()
        assert M.spectral_norm(w) == pytest.approx(expected, rel=1e-10)
        assert M.frobenius_norm(w) == pytest.approx(np.sqrt((w.double() ** 2).sum().item()), rel=1e-12)
    assert M.as_matrix(torch.zeros(4, 3, 2, 2)).shape == (4, 12)


def test_norm_measures_by_hand():
    # W1: singular values (3, 1), ||W1||_F^2 = 10; W2: spectral 2, ||W2||_F^2 = 4
    net = nn.Sequential(linear([[3, 0], [0, 1], [0, 0]], [1, 1, 1]), nn.ReLU(), linear([[2, 0, 0], [0, 0, 0]], [5, 5]))
    ctx = ctx_for(net)
    val = lambda n: compute_measure(n, ctx).value  # noqa: E731
    assert val("log_prod_spectral") == pytest.approx(math.log(9 * 4))
    assert val("log_sum_spectral") == pytest.approx(math.log(2 * math.sqrt(9 * 4)))  # = log(9 + 4) if balanced
    assert val("log_prod_frobenius") == pytest.approx(math.log(10 * 4))
    assert val("log_sum_frobenius") == pytest.approx(math.log(2 * math.sqrt(10 * 4)))
    assert val("param_norm") == pytest.approx(14.0)  # biases excluded
    assert val("num_params") == 6 + 3 + 6 + 2


def test_batchnorm_is_folded_into_the_layer_before():
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, -0.5]))
        bn.running_mean.copy_(torch.tensor([1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([3.0, 3.0]))
    net = nn.Sequential(linear([[1, 0], [0, 1]]), bn, nn.ReLU(), linear([[1, 0], [0, 1]]))
    s = 1 / math.sqrt(3 + bn.eps)
    assert compute_measure("log_prod_spectral", ctx_for(net)).value == pytest.approx(math.log((2 * s) ** 2 * 1))
    folded = M.fold_batchnorm(net)
    x = torch.randn(5, 2)
    assert torch.allclose(folded(x), net.eval()(x), atol=1e-6)
    assert torch.allclose(folded[0].weight, torch.diag(torch.tensor([2 * s, s])))
    # a BN that does not follow a layer cannot be folded: error text, no exception
    odd = nn.Sequential(nn.BatchNorm1d(2), linear([[1, 0], [0, 1]]))
    r = compute_measure("log_prod_spectral", ctx_for(odd))
    assert not r.ok and "cannot fold" in r.error


def test_path_norm_of_a_two_layer_relu_network_by_hand():
    w1, b1 = [[1, -2], [0, 3], [-1, 1]], [1, -1, 0]
    w2, b2 = [[1, 0, -1], [2, 1, 0]], [0, -3]
    net = nn.Sequential(linear(w1, b1), nn.ReLU(), linear(w2, b2))
    # hidden: W1^2 1 + b1^2 = [6, 10, 2]; out: W2^2 h + b2^2 = [6 + 2, 24 + 10 + 9] = [8, 43]
    x = torch.randn(4, 2)
    assert compute_measure("path_norm", ctx_for(net, x, torch.zeros(4, dtype=torch.long))).value == pytest.approx(51)
    assert M.path_norm_value(net, (2,)) == pytest.approx(51)
    r = compute_measure("path_norm", ctx_for(nn.Sequential(linear(w1), nn.GELU(), linear(w2)), x, torch.zeros(4)))
    assert not r.ok and "GELU" in r.error


def test_dist_from_init():
    net = nn.Sequential(linear([[1, 2], [3, 4]], [0, 0]), nn.ReLU(), linear([[1, 1]], [1]))
    init = copy.deepcopy(net)
    assert compute_measure("dist_from_init", ctx_for(net, init_model=init)).value == 0.0
    with torch.no_grad():
        net[0].weight[0, 1] += 3.0
        net[2].bias[0] -= 4.0
    assert compute_measure("dist_from_init", ctx_for(net, init_model=init)).value == pytest.approx(5.0)
    r = compute_measure("dist_from_init", ctx_for(net, init_model=nn.Sequential(linear([[1.0]]))))
    assert not r.ok and "does not match" in r.error


def test_margin_on_a_hand_made_example():
    ident = linear(torch.eye(3), torch.zeros(3))  # logits = inputs
    x = torch.tensor([[0.0, 2.0, 1.0], [3.0, 1.0, 0.5], [0.0, 0.0, 4.0]])
    y = torch.tensor([0, 0, 2])
    assert M.output_margins(ident, x, y).tolist() == [-2.0, 2.0, 4.0]
    # ten examples of class 0 with margins 1..10: the 10th percentile (linear interpolation) is 1.9
    m = torch.arange(1.0, 11.0)
    x = torch.stack([m, torch.zeros(10), -torch.ones(10)], 1)
    y = torch.zeros(10, dtype=torch.long)
    assert M.margin_quantile(ident, x, y) == pytest.approx(1.9)
    ctx = ctx_for(ident, x, y)
    assert compute_measure("inverse_margin", ctx).value == pytest.approx(1 / 1.9**2)
    # path norm of the identity layer: each output sums its squared weight row plus squared bias = 1
    assert compute_measure("path_norm_over_margin", ctx).value == pytest.approx(3 / 1.9**2)
    # mostly misclassified: gamma <= 0 is an error, not a number
    r = compute_measure("inverse_margin", ctx_for(ident, x, torch.ones(10, dtype=torch.long)))
    assert not r.ok and "margin" in r.error


# ---------------------------------------------------------------------------------- flatness
def _linear_pair(c: float):
    torch.manual_seed(0)
    w1, w2 = torch.randn(8, 5) / 2, torch.randn(3, 8) / 2
    net = nn.Sequential(nn.Linear(5, 8, bias=False), nn.Linear(8, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(c * w1)
        net[1].weight.copy_(w2 / c)
    return net


def test_flatness_is_larger_for_the_sharper_of_two_equivalent_networks():
    flat, sharp = _linear_pair(1.0), _linear_pair(4.0)
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(1))
    y = flat(x).argmax(1)
    assert torch.equal(sharp(x).argmax(1), y)  # the same function
    val = lambda net, name: compute_measure(name, ctx_for(net, x, y, seed=3))  # noqa: E731
    f_flat, f_sharp = val(flat, "pacbayes_flatness"), val(sharp, "pacbayes_flatness")
    assert f_flat.ok and f_sharp.ok, (f_flat.error, f_sharp.error)
    assert f_sharp.value > 2 * f_flat.value
    # deterministic given the seed
    assert val(sharp, "pacbayes_flatness").value == f_sharp.value
    # magnitude-aware noise is (up to eps) invariant to the rescaling
    m_flat, m_sharp = val(flat, "pacbayes_mag_flatness"), val(sharp, "pacbayes_mag_flatness")
    assert m_flat.ok and m_sharp.ok
    assert m_sharp.value == pytest.approx(m_flat.value, rel=0.1)
    # sigma is monotone in the tolerated drop
    s1 = M.pacbayes_sigma(flat, x, y, target_drop=0.05, seed=0)
    s2 = M.pacbayes_sigma(flat, x, y, target_drop=0.2, seed=0)
    assert 0 < s1 < s2


# ---------------------------------------------------------------------------------- zero-cost proxies
def test_zero_cost_proxies_are_finite_on_a_cnn_and_an_mlp(trained_mlp, trained_cnn):
    from gnsel.models import create_model

    cnn1d = create_model("cnn1d", num_classes=3, input_shape=(24,), channels=4, depth=2, batch_norm=True)
    x1 = torch.randn(16, 24)
    cases = [trained_mlp[0::2], trained_cnn[0::2], (cnn1d, x1)]
    for model, x in cases:
        y = torch.arange(len(x)) % 3
        ctx = ctx_for(model, x, y)
        for name in ("grad_norm", "snip", "synflow", "jacob_cov", "nwot"):
            r = compute_measure(name, ctx)
            assert r.ok and math.isfinite(r.value), (type(model).__name__, name, r.error)


def test_zero_cost_proxies_by_hand():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 3, bias=False))
    x, y = torch.randn(10, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    # synflow of a bias-free ReLU net: R = 1^T |W2| |W1| 1 is homogeneous of degree 1 in each layer, so
    # sum |W_l * dR/dW_l| = R for each of the two layers
    r_val = (net[2].weight.abs() @ net[0].weight.abs() @ torch.ones(4)).sum().item()
    assert compute_measure("synflow", ctx_for(net, x, y)).value == pytest.approx(2 * r_val, rel=1e-6)
    ref = copy.deepcopy(net)
    F.cross_entropy(ref(x), y).backward()
    g1, g2 = ref[0].weight.grad, ref[2].weight.grad
    assert compute_measure("grad_norm", ctx_for(net, x, y)).value == pytest.approx(
        (g1.norm() + g2.norm()).item(), rel=1e-5
    )
    snip = (ref[0].weight * g1).abs().sum() + (ref[2].weight * g2).abs().sum()
    assert compute_measure("snip", ctx_for(net, x, y)).value == pytest.approx(snip.item(), rel=1e-5)
    # jacob_cov from the Jacobians computed by hand
    xg = x.clone().requires_grad_(True)
    ref(xg).sum().backward()
    v = np.clip(np.linalg.eigvalsh(np.corrcoef(xg.grad.double().numpy())), 0, None)
    expect = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert compute_measure("jacob_cov", ctx_for(net, x, y)).value == pytest.approx(expect, rel=1e-6)


def _code_net(codes: list[list[int]]) -> nn.Module:
    """One-hot input i makes the hidden ReLU pre-activations +1/-1 following codes[i]."""
    w1 = torch.tensor(codes, dtype=torch.float32).T * 2 - 1  # (units, inputs)
    return nn.Sequential(linear(w1), nn.ReLU(), linear(torch.ones(2, len(codes[0]))))


def test_nwot_is_higher_for_more_distinct_activation_patterns():
    x, y = torch.eye(4), torch.zeros(4, dtype=torch.long)
    distinct = _code_net([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # pairwise Hamming 2
    similar = _code_net([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])  # thermometer codes
    k_distinct = zc.nwot_kernel(distinct, x)
    assert np.array_equal(k_distinct, 2 * np.eye(4) + 2 * np.ones((4, 4)))  # N_A - Hamming
    a = compute_measure("nwot", ctx_for(distinct, x, y))
    b = compute_measure("nwot", ctx_for(similar, x, y))
    assert a.value == pytest.approx(math.log(80))  # det(2 I + 2 11^T) = 2^3 * 10
    toeplitz = np.array([[4, 3, 2, 1], [3, 4, 3, 2], [2, 3, 4, 3], [1, 2, 3, 4]], dtype=float)
    assert b.value == pytest.approx(np.linalg.slogdet(toeplitz)[1])
    assert a.value > b.value
    gelu = nn.Sequential(linear(torch.ones(3, 4)), nn.GELU(), linear(torch.ones(2, 3)))
    r = compute_measure("nwot", ctx_for(gelu, x, y))
    assert not r.ok and "ReLU" in r.error


# ---------------------------------------------------------------------------------- heavy-tailed spectra
def _pareto(n: int, alpha: float, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).random(n)
    return (1.0 - u) ** (-1.0 / (alpha - 1.0))  # density ~ x^-alpha on [1, inf)


def test_powerlaw_fit_recovers_a_known_exponent():
    for alpha in (2.0, 3.5):
        fit = M.fit_powerlaw(_pareto(3000, alpha, seed=1))
        assert fit.alpha == pytest.approx(alpha, abs=0.15)
        assert 0 <= fit.D < 0.1 and fit.n_tail > 100


def test_ww_alpha_on_random_and_heavy_tailed_layers():
    g = torch.Generator().manual_seed(0)
    gauss = nn.Sequential(nn.Linear(80, 120), nn.ReLU(), nn.Conv1d(4, 4, 3))  # any Linear/Conv layers
    with torch.no_grad():
        gauss[0].weight.copy_(torch.randn(120, 80, generator=g) / 10)
    ctx = ctx_for(gauss)
    for name in ("ww_alpha", "ww_alpha_weighted"):
        r = compute_measure(name, ctx)
        assert r.ok and math.isfinite(r.value), r.error
    # a layer whose ESD is exactly Pareto(alpha = 3): W = U diag(sqrt(lambda)) V^T
    lam = _pareto(300, 3.0, seed=2)
    u, _ = torch.linalg.qr(torch.randn(600, 300, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(300, 300, generator=g, dtype=torch.float64))
    w = u @ torch.diag(torch.from_numpy(np.sqrt(lam))) @ v.T
    np.testing.assert_allclose(M.layer_eigenvalues(w), np.sort(lam), rtol=1e-8)
    layer = nn.Linear(300, 600, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w.float())
    heavy = ctx_for(nn.Sequential(layer))
    assert compute_measure("ww_alpha", heavy).value == pytest.approx(3.0, abs=0.35)
    fit = M.fit_powerlaw(lam)
    assert compute_measure("ww_alpha_weighted", heavy).value == pytest.approx(
        fit.alpha * math.log10(lam.max()), rel=1e-3
    )
    # conv kernels pool the eigenvalues of their (out, in) slices
    k = torch.randn(5, 3, 2, 2, generator=g)
    pooled = np.sort(np.concatenate([np.linalg.svd(k[:, :, i, j].numpy(), compute_uv=False) ** 2
                                     for i in range(2) for j in range(2)]))  # fmt: skip
    np.testing.assert_allclose(M.layer_eigenvalues(k), pooled, rtol=1e-5)


# ---------------------------------------------------------------------------------- PGDL
def test_davies_bouldin_matches_sklearn_and_db_mixup_runs(trained_mlp):
    from sklearn.metrics import davies_bouldin_score

    x, y = clusters(20, 5, classes=4, seed=3)
    assert M.davies_bouldin(x, y) == pytest.approx(davies_bouldin_score(x.numpy(), y.numpy()), rel=1e-6)
    assert M.davies_bouldin(x, y, reduce="mean") < M.davies_bouldin(x, y)
    model, _, x, y = trained_mlp
    feats = M.early_features(model, x)
    assert feats.shape == (len(x), 128) and (feats >= 0).all()  # the first layer, after its ReLU
    acc = M.labelwise_mixup_accuracy(model, x, y)
    r = compute_measure("db_mixup", ctx_for(model, x, y))
    assert r.ok and r.value == pytest.approx(M.davies_bouldin(feats, y) * (1 - acc))


# ---------------------------------------------------------------------------------- gradient family, baselines
def test_gn_measures_equal_gnsel_gradient_norm(trained_cnn):
    model, _, x, y = trained_cnn
    ctx = ctx_for(model, x, y)
    full, fc = gradient_norm(model, (x, y), device="cpu"), gradient_norm(model, (x, y), scope="fc", device="cpu")
    assert compute_measure("gn_full", ctx).value == full.mean_sq
    assert compute_measure("gn_fc", ctx).value == fc.mean_sq
    assert compute_measure("mean_grad_sq", ctx).value == full.mean_grad_sq
    assert compute_measure("grad_variance", ctx).value == pytest.approx(full.variance)
    assert compute_measure("traj_gn", MeasureContext(row=dict(ROW))).value == pytest.approx(1.5**0.5 / 100)  # sqrt(S)/n


def test_baselines():
    ctx = MeasureContext(row=dict(ROW), config={"lr": 0.1}, seed=4)
    assert compute_measure("val_loss", ctx).value == 0.7
    assert compute_measure("val_error", ctx).value == pytest.approx(0.2)
    assert compute_measure("train_loss", ctx).value == 0.2
    r = compute_measure("random", ctx).value
    assert 0 <= r < 1 and compute_measure("random", ctx).value == r
    others = {compute_measure("random", MeasureContext(config={"lr": 0.1}, seed=5)).value,
              compute_measure("random", MeasureContext(config={"lr": 0.2}, seed=4)).value}  # fmt: skip
    assert r not in others


# ---------------------------------------------------------------------------------- store round trip
def test_load_context_and_measure_run_from_a_store(tmp_path, monkeypatch):
    from gnsel.training import TrainConfig
    from gnsel.store import Store
    from gnsel.training import train
    from gnsel.zoo.measure import load_context, measure_run

    monkeypatch.setenv("GNSEL_DATA_ROOT", str(tmp_path / "data"))
    cfg = TrainConfig(dataset="digits", n_train=120, model_kwargs={"width": 16}, epochs=1, batch_size=60,
                      probe_size=48, device="cpu")  # fmt: skip
    store = Store(tmp_path / "runs.sqlite")
    rid = store.register_run(cfg.to_dict())
    train(cfg, on_epoch=lambda e, row: store.add_epochs(rid, [row]),
          on_checkpoint=lambda e, state: store.save_checkpoint(rid, e, state))  # fmt: skip
    ctx = load_context(store, rid)
    assert ctx.row["epoch"] == 1 and len(ctx.train_data[1]) == 48 and ctx.init_model is not None
    assert not ctx.model.training
    assert compute_measure("gn_full", ctx).value == pytest.approx(ctx.row["gn_full"], rel=1e-9)
    assert compute_measure("dist_from_init", ctx).value > 0
    assert compute_measure("dist_from_init", load_context(store, rid, 0)).value == 0.0
    names = ["gn_full", "dist_from_init", "random", "val_error"]
    first = measure_run(store, rid, names)
    assert all(v.ok for v in first.values())
    cached = store.get_measures([rid])
    assert set(cached["measure"]) == set(names) and (cached["epoch"] == 1).all()
    again = measure_run(store, rid, names)
    assert {n: v.value for n, v in again.items()} == pytest.approx({n: v.value for n, v in first.items()})
