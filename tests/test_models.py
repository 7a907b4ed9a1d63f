"""Tests for the model registry ``gnsel.models``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gnsel.models import (
    classifier_head,
    create_model,
    list_models,
    model_defaults,
    register_model,
)
from gnsel.models import registry as _registry

EXPECTED_MODELS = {
    "mlp", "cnn1d", "lenet5", "vgg11", "vgg16",
    "resnet20", "resnet18", "mobilenetv2", "transformer",
}

# (model, input_shape, small kwargs to keep the test fast)
CASES: list[tuple[str, tuple[int, ...], dict]] = [
    ("mlp", (40,), {}),
    ("mlp", (1, 40), {"depth": 1, "width": 16, "batch_norm": True, "dropout": 0.1}),
    ("mlp", (3, 8, 8), {"depth": 0}),
    ("mlp", (40,), {"activation": "gelu", "width": 8}),
    ("cnn1d", (40,), {}),
    ("cnn1d", (1, 40), {"batch_norm": True, "dropout": 0.2, "kernel_size": 4}),
    ("cnn1d", (3, 17), {"depth": 5, "width_mult": 0.5}),
    ("lenet5", (1, 28, 28), {}),
    ("lenet5", (3, 32, 32), {"batch_norm": True, "dropout": 0.5}),
    ("lenet5", (3, 13, 19), {}),
    ("vgg11", (3, 32, 32), {"width_mult": 0.125}),
    ("vgg11", (1, 28, 28), {"width_mult": 0.125, "batch_norm": False, "dropout": 0.3}),
    ("vgg16", (3, 32, 32), {"width_mult": 0.125}),
    ("resnet20", (3, 32, 32), {"width_mult": 0.5}),
    ("resnet20", (1, 28, 28), {"width_mult": 0.5, "depth_mult": 0.34, "batch_norm": False}),
    ("resnet18", (3, 16, 16), {"width_mult": 0.125}),
    ("resnet18", (3, 17, 23), {"width_mult": 0.125, "batch_norm": False}),
    ("mobilenetv2", (3, 32, 32), {"width_mult": 0.25}),
    ("mobilenetv2", (1, 28, 28), {"width_mult": 0.25, "dropout": 0.2}),
    ("transformer", (16,), {}),
    ("transformer", (7,), {"d_model": 32, "n_heads": 2, "n_layers": 1, "dropout": 0.1}),
    ("transformer", (5,), {"n_layers": 0, "vocab_size": 10, "max_len": 5}),
]

CASE_IDS = [f"{n}-{'x'.join(map(str, s))}-{i}" for i, (n, s, _) in enumerate(CASES)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_input(name: str, shape: tuple[int, ...], batch: int = 2, vocab: int = 10) -> torch.Tensor:
    if name == "transformer":
        return torch.randint(0, vocab, (batch, *shape))
    return torch.randn(batch, *shape)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name: str, shape: tuple[int, ...], num_classes: int = 10, **kw) -> nn.Module:
    return create_model(name, num_classes=num_classes, input_shape=shape, **kw)


# --------------------------------------------------------------------------- registry


def test_list_models():
    names = list_models()
    assert names == sorted(names)
    assert EXPECTED_MODELS <= set(names)


def test_every_registered_model_is_covered_by_cases():
    assert set(list_models()) <= {n for n, _, _ in CASES}


def test_model_defaults():
    assert model_defaults("resnet20") == {"width_mult": 1.0, "depth_mult": 1.0, "batch_norm": True}
    assert model_defaults("mlp") == {
        "depth": 2, "width": 256, "dropout": 0.0, "batch_norm": False, "activation": "relu",
    }
    assert model_defaults("cnn1d") == {
        "channels": 32, "depth": 3, "kernel_size": 5, "dropout": 0.0,
        "batch_norm": False, "width_mult": 1.0,
    }
    assert model_defaults("lenet5") == {"width_mult": 1.0, "dropout": 0.0, "batch_norm": False}
    for vgg in ("vgg11", "vgg16"):
        assert model_defaults(vgg) == {"width_mult": 1.0, "batch_norm": True, "dropout": 0.0}
    assert model_defaults("resnet18") == {"width_mult": 1.0, "batch_norm": True}
    assert model_defaults("mobilenetv2") == {"width_mult": 1.0, "dropout": 0.0}
    assert model_defaults("transformer") == {
        "vocab_size": 64, "d_model": 64, "n_heads": 4, "n_layers": 2, "dim_ff": 128,
        "max_len": 64, "dropout": 0.0,
    }
    assert "tie_embeddings" not in model_defaults("transformer")
    # A copy: mutating it does not affect the registry.
    d = model_defaults("mlp")
    d["depth"] = 99
    assert model_defaults("mlp")["depth"] == 2


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError) as exc:
        create_model("resnet21", num_classes=10, input_shape=(3, 32, 32))
    msg = str(exc.value)
    assert "resnet21" in msg
    for name in list_models():
        assert name in msg
    with pytest.raises(ValueError, match="resnet21"):
        model_defaults("resnet21")


def test_unknown_kwarg_lists_accepted():
    with pytest.raises(ValueError) as exc:
        create_model("resnet20", num_classes=10, input_shape=(3, 32, 32), widht_mult=2.0)
    msg = str(exc.value)
    assert "widht_mult" in msg and "resnet20" in msg
    for key in model_defaults("resnet20"):
        assert key in msg
    with pytest.raises(ValueError, match="tie_embeddings"):
        create_model("transformer", num_classes=2, input_shape=(8,), tie_embeddings=True)


@pytest.mark.parametrize(
    "kwargs",
    [{"width_mult": "1"}, {"batch_norm": 1}, {"width_mult": True}],
)
def test_bad_kwarg_types(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        create_model("resnet20", num_classes=10, input_shape=(3, 32, 32), **kwargs)


def test_int_hyperparameter_rejects_float():
    with pytest.raises(ValueError, match="depth"):
        create_model("mlp", num_classes=10, input_shape=(40,), depth=2.0)
    # ints are fine where a float is expected
    create_model("cnn1d", num_classes=10, input_shape=(40,), width_mult=1)


@pytest.mark.parametrize(
    "name,num_classes,shape",
    [
        ("mlp", 0, (40,)),
        ("mlp", 10, ()),
        ("mlp", 10, (0, 3)),
        ("mlp", 10, "40"),
        ("resnet20", 10, (32, 32)),
        ("lenet5", 10, (40,)),
        ("lenet5", 10, (1, 8, 8)),
        ("cnn1d", 10, (3, 32, 32)),
        ("transformer", 10, (3, 8)),
        ("transformer", 10, (65,)),
    ],
)
def test_bad_arguments(name, num_classes, shape):
    with pytest.raises(ValueError):
        create_model(name, num_classes=num_classes, input_shape=shape)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("mlp", {"activation": "swishy"}),
        ("mlp", {"dropout": 1.0}),
        ("mlp", {"depth": -1}),
        ("resnet20", {"width_mult": 0.0}),
        ("transformer", {"d_model": 30, "n_heads": 4}),
    ],
)
def test_bad_hyperparameter_values(name, kwargs):
    shape = (8,) if name == "transformer" else (3, 32, 32)
    with pytest.raises(ValueError):
        create_model(name, num_classes=3, input_shape=shape, **kwargs)


def test_list_input_shape_accepted():
    model = create_model("mlp", num_classes=3, input_shape=[1, 40], width=8)
    assert model(torch.randn(2, 1, 40)).shape == (2, 3)


def test_register_model_decorator():
    name = "_test_tiny_linear"

    @register_model(name)
    def tiny(num_classes: int, input_shape: tuple[int, ...], *, bias: bool = True) -> nn.Module:
        """A linear model."""
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes, bias=bias))

    try:
        assert name in list_models()
        assert model_defaults(name) == {"bias": True}
        model = create_model(name, num_classes=4, input_shape=(5,), bias=False)
        assert model[1].bias is None
        # Registering the same function twice is harmless; another one under the name is not.
        register_model(name)(tiny)
        with pytest.raises(ValueError, match="already registered"):
            register_model(name)(lambda num_classes, input_shape: nn.Identity())
        with pytest.raises(TypeError):
            register_model("_test_bad")(lambda num_classes, input_shape, depth: nn.Identity())
    finally:
        for key in (name, "_test_bad"):  # the registry is one Registry now, not two dicts
            if key in _registry.MODELS:
                _registry.MODELS.unregister(key)
    assert name not in list_models()


# --------------------------------------------------------------------------- forward / head


@pytest.mark.parametrize("name,shape,kwargs", CASES, ids=CASE_IDS)
def test_forward_and_head(name, shape, kwargs):
    torch.manual_seed(0)
    num_classes = 7
    model = build(name, shape, num_classes, **kwargs)
    head = classifier_head(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert head is linears[-1]
    assert head.out_features == num_classes

    captured: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda mod, inp, out: captured.append(out))
    x = make_input(name, shape)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        captured.clear()
        out = model(x)
        assert out.shape == (2, num_classes)
        assert len(captured) == 1 and out is captured[0], "model output must be the head output"
        assert torch.isfinite(out).all()
    handle.remove()

    # Gradients reach every parameter (train mode, no in-place breakage).
    model.train()
    model.zero_grad()
    model(x).logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize(
    "name,shape,kwargs",
    [c for c in CASES if c[0] in ("mlp", "cnn1d", "lenet5", "resnet20", "mobilenetv2",
                                  "transformer")][::2],
)
def test_full_backward_hooks_compatible(name, shape, kwargs):
    """Per-example-gradient tooling hooks Linear/Conv layers; in-place ops would break that."""
    torch.manual_seed(0)
    model = build(name, shape, 3, **kwargs)
    seen: list[str] = []
    for mname, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            m.register_full_backward_hook(lambda mod, gi, go, n=mname: seen.append(n))
    model(make_input(name, shape)).sum().backward()
    assert seen


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize(
    "name,shape,kwargs",
    [
        ("mlp", (40,), {"width": 16}),
        ("cnn1d", (40,), {}),
        ("lenet5", (1, 28, 28), {}),
        ("resnet20", (3, 8, 8), {"width_mult": 0.25, "batch_norm": False}),
        ("vgg11", (3, 8, 8), {"width_mult": 0.0625, "batch_norm": False}),
        ("transformer", (6,), {"d_model": 16, "n_heads": 2, "n_layers": 1}),
    ],
)
def test_torch_func_per_example_grads(name, shape, kwargs):
    """BN-free models work with functional_call + vmap(grad) (per-example gradients)."""
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    model = build(name, shape, 3, **kwargs)
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = make_input(name, shape, batch=3), torch.tensor([0, 1, 2])

    def loss(p, xi, yi):
        out = functional_call(model, p, (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    model.zero_grad()
    loss(dict(model.named_parameters()), x[1], y[1]).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(per_example[k][1], p.grad, rtol=1e-4, atol=1e-5)


def test_cnn1d_accepts_unbatched_channel_forms():
    torch.manual_seed(0)
    model = build("cnn1d", (40,), 10).eval()
    x = torch.randn(2, 40)
    torch.testing.assert_close(model(x), model(x.unsqueeze(1)))


def test_transformer_rejects_float_and_long_inputs():
    model = build("transformer", (8,), 2, max_len=8)
    with pytest.raises(ValueError):
        model(torch.randn(2, 8))
    with pytest.raises(ValueError):
        model(torch.randint(0, 10, (2, 9)))
    assert model(torch.randint(0, 10, (2, 3))).shape == (2, 2)  # shorter sequences are fine


def test_dropout_before_head():
    torch.manual_seed(0)
    model = build("vgg11", (3, 16, 16), 5, width_mult=0.125, dropout=0.5)
    assert isinstance(model.dropout, nn.Dropout)
    plain = build("vgg11", (3, 16, 16), 5, width_mult=0.125)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_batch_norm_flag():
    for name, shape in [("resnet20", (3, 16, 16)), ("vgg11", (3, 16, 16)),
                        ("lenet5", (1, 28, 28)), ("cnn1d", (40,)), ("mlp", (40,))]:
        kw = {"width_mult": 0.25} if name in ("resnet20", "vgg11") else {}
        with_bn = build(name, shape, batch_norm=True, **kw)
        no_bn = build(name, shape, batch_norm=False, **kw)
        assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in with_bn.modules())
        assert not any(
            isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm))
            for m in no_bn.modules()
        ), name


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "name,lo,hi",
    [
        ("resnet20", 0.26e6, 0.28e6),
        ("vgg11", 9.1e6, 9.3e6),
        ("lenet5", 61_000, 63_000),
        ("mlp", 0.85e6, 0.86e6),
        ("mobilenetv2", 2.2e6, 2.3e6),
    ],
)
def test_param_counts(name, lo, hi):
    model = build(name, (3, 32, 32), 10)
    assert lo <= n_params(model) <= hi


def test_param_counts_exact_small():
    assert n_params(build("resnet20", (3, 32, 32), 10)) == 269_722  # He et al. option A
    assert n_params(build("lenet5", (3, 32, 32), 10)) == 62_006
    assert n_params(build("lenet5", (1, 28, 28), 10)) == 61_706  # classic padded MNIST LeNet-5
    assert n_params(build("cnn1d", (40,), 10)) == 10_826
    assert n_params(build("transformer", (64,), 10)) == 75_914


def test_num_classes_changes_only_head():
    a = build("resnet20", (3, 32, 32), 10, width_mult=0.5)
    b = build("resnet20", (3, 32, 32), 100, width_mult=0.5)
    feat = classifier_head(a).in_features
    assert n_params(b) - n_params(a) == 90 * (feat + 1)


@pytest.mark.parametrize(
    "name,shape,key,small,large",
    [
        ("mlp", (40,), "width", 8, 16),
        ("cnn1d", (40,), "width_mult", 0.5, 1.0),
        ("lenet5", (1, 28, 28), "width_mult", 0.5, 1.0),
        ("vgg11", (3, 16, 16), "width_mult", 0.0625, 0.125),
        ("vgg16", (3, 16, 16), "width_mult", 0.0625, 0.125),
        ("resnet20", (3, 16, 16), "width_mult", 0.5, 1.0),
        ("resnet20", (3, 16, 16), "depth_mult", 0.34, 1.0),
        ("resnet18", (3, 16, 16), "width_mult", 0.0625, 0.125),
        ("mobilenetv2", (3, 16, 16), "width_mult", 0.125, 0.25),
        ("transformer", (8,), "d_model", 16, 32),
        ("transformer", (8,), "n_layers", 1, 2),
    ],
)
def test_scaling_changes_param_count(name, shape, key, small, large):
    assert n_params(build(name, shape, **{key: small})) < n_params(build(name, shape, **{key: large}))


def test_resnet20_depth_mult_block_count():
    from gnsel.models.resnet import BasicBlock

    def blocks(m: nn.Module) -> int:
        return sum(isinstance(b, BasicBlock) for b in m.modules())

    assert blocks(build("resnet20", (3, 8, 8))) == 9
    assert blocks(build("resnet20", (3, 8, 8), depth_mult=0.34)) == 3
    assert blocks(build("resnet20", (3, 8, 8), depth_mult=0.01)) == 3  # >= 1 per stage
    assert blocks(build("resnet20", (3, 8, 8), width_mult=0.25, depth_mult=2.0)) == 18


def test_tiny_width_mult_rounds_to_at_least_one():
    model = build("resnet20", (3, 8, 8), 4, width_mult=0.01)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "name,shape,kwargs",
    [
        ("mlp", (40,), {"width": 16, "dropout": 0.3}),
        ("cnn1d", (40,), {}),
        ("lenet5", (1, 28, 28), {}),
        ("resnet20", (3, 16, 16), {"width_mult": 0.5}),
        ("vgg11", (3, 16, 16), {"width_mult": 0.125, "dropout": 0.2}),
        ("mobilenetv2", (3, 16, 16), {"width_mult": 0.25}),
        ("transformer", (8,), {"dropout": 0.1}),
    ],
)
def test_deterministic_under_seed(name, shape, kwargs):
    outs, states = [], []
    for _ in range(2):
        torch.manual_seed(123)
        model = build(name, shape, 5, **kwargs)
        x = make_input(name, shape)
        outs.append(model(x))  # train mode: dropout masks also follow the seed
        states.append(model.state_dict())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    torch.manual_seed(7)
    other = build(name, shape, 5, **kwargs)
    assert not all(torch.equal(states[0][k], v) for k, v in other.state_dict().items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("name,shape,kwargs", CASES[::3], ids=CASE_IDS[::3])
def test_cuda_matches_cpu(name, shape, kwargs):
    torch.manual_seed(0)
    model = build(name, shape, 3, **kwargs).eval()
    x = make_input(name, shape)
    with torch.no_grad():
        ref = model(x)
        out = model.cuda()(x.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-3, atol=1e-3)
