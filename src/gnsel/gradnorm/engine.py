"""The exact per-example gradient-norm engine: one forward and one backward pass per batch.

Forward hooks keep each parametrised layer's input and put a hook on its output; the backward pass
is taken with respect to a few *anchors* only (never all parameters), so autograd computes the
gradients of activations and skips parameter gradients, as far as the graph allows. When a layer's
output gradient arrives, its rule (``rules/``) turns input and output gradient into per-example
squared norms right away and lets both go, so memory stays close to a training step's.

Anchors: a layer's backward node runs if the loss depends, through it, on some anchor. Parameters
outside the scope are made constant for the pass, so every activation that needs a gradient depends
on an in-scope parameter; anchoring the smallest in-scope parameter of each layer whose inputs need
no gradient (the first layers) therefore reaches every hooked layer at the cost of, typically, a
bias gradient.

Parameters used by a module other than their owner (``nn.MultiheadAttention`` reads its
``out_proj`` weights directly) are adopted by the nearest enclosing module that ran, which then goes
through the ``torch.func`` fallback. Parameters with several uses are combined before the norm.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from .contrib import Contribution, chunk_budget, combined_sq_norms
from .errors import GradNormError, NonFiniteLossError
from .fallback import batch_dim, fallback_contributions, warn_fallback
from .rules import lookup_rule
from .tracking import ForwardTracker, _tensors


@dataclass
class _Call:
    """One forward call of a hooked module, until its output gradient has been used."""

    module: nn.Module
    names: list[str]  # in-scope parameter names, relative to the module
    args: tuple
    kwargs: dict
    output: object
    grads: dict[int, Tensor] = field(default_factory=dict)
    adopter: bool = False


class _Structure:
    """Static facts about a model and a scope, computed once and cached per model."""

    def __init__(self, model: nn.Module, ids: dict[int, str]):
        self.owned: dict[nn.Module, list[str]] = {}
        self.names: dict[nn.Module, str] = {}
        self.parent: dict[nn.Module, nn.Module] = {}
        self.owners: dict[int, set[int]] = {}
        for mname, m in model.named_modules(remove_duplicate=False):
            self.names.setdefault(m, mname)
            own = [n for n, p in m.named_parameters(recurse=False) if id(p) in ids]
            if own:
                self.owned[m] = own
                for n, p in m.named_parameters(recurse=False):
                    if id(p) in ids:
                        self.owners.setdefault(id(p), set()).add(id(m))
            for child in m.children():
                self.parent.setdefault(child, m)
        # modules that hold in-scope parameters, themselves or below: the ones worth hooking
        self.holders = [m for m in model.modules() if m in self.owned or any(id(p) in ids for p in m.parameters())]
        self.params = {m: dict(m.named_parameters(remove_duplicate=False)) for m in self.holders}


@dataclass
class _Plan:
    """What a discovery pass decided for an input signature, replayed by later passes."""

    names: dict[nn.Module, list[str]]
    adopter: dict[nn.Module, bool]
    skip: set[nn.Module]
    broadcast: set[nn.Module]


_CACHE: dict[int, tuple[tuple, _Structure, dict[tuple, _Plan]]] = {}


def _cached(model: nn.Module, ids: dict[int, str]) -> tuple[_Structure, dict[tuple, _Plan]]:
    """Structure and plans of ``model`` for this scope, rebuilt when its modules or scope change."""
    key = (tuple(map(id, model.modules())), tuple(sorted(ids)))
    entry = _CACHE.get(id(model))
    if entry is None or entry[0] != key:
        if entry is None:
            weakref.finalize(model, _CACHE.pop, id(model), None)
        entry = (key, _Structure(model, ids), {})
        _CACHE[id(model)] = entry
    return entry[1], entry[2]


def _signature(obj: object) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in _tensors(obj))


class GradNormHooks:
    """Hooks that collect exact per-example squared gradient norms of ``params`` in ``model``.

    Use as a context manager around one forward pass, ``prepare()``, one backward pass of the sum
    of per-example losses, and ``sq_norms()``. The first pass for an input signature discovers
    (with a ``TorchFunctionMode``) which layers are batched and where parameters are used; later
    passes with the same signature replay that plan without the tracking overhead.
    """

    def __init__(
        self, model: nn.Module, params: dict[str, nn.Parameter], batch: int | None = None, persistent: bool = False
    ):
        self.model = model
        self.persistent = persistent
        self.params = params
        self._ids = {id(p): n for n, p in params.items()}
        self._struct, self._plans = _cached(model, self._ids)
        self._owned = self._struct.owned
        self._parent = self._struct.parent
        self.active = False
        self._handles: list = []
        self.batch = batch
        self._tracker = ForwardTracker(set(self._ids), self._struct.owners, self._note_foreign)
        self._reset()

    def _reset(self) -> None:
        self._calls: list[_Call] = []
        self._containers: dict[nn.Module, list[_Call]] = {}
        self._parts: dict[int, list[Contribution]] = {}
        self._sq: Tensor | None = None
        self._uses: dict[int, int] = {}
        self._unbatched: set[nn.Module] = set()
        self._broadcasted: set[nn.Module] = set()
        self._foreign: dict[int, tuple[nn.Parameter, set[nn.Module]]] = {}
        self._plan: _Plan | None = None
        self._sig: tuple | None = None
        self._tracking = False
        self._tracker.stack.clear()

    # ------------------------------------------------------------------ hooks
    def __enter__(self) -> "GradNormHooks":
        if not self._handles:
            self._attach()
        self.active = True
        return self

    def _attach(self) -> None:
        root = self.model
        for m in self._struct.holders:
            is_owner = m in self._owned
            self._handles.append(m.register_forward_pre_hook(self._pre_hook(m is root), with_kwargs=True))
            self._handles.append(m.register_forward_hook(self._forward_hook(m, is_owner), with_kwargs=True))

    def __exit__(self, *exc: object) -> None:
        self._stop_tracking()
        self.active = False
        if not self.persistent:
            self.detach()
        self._reset()

    def detach(self) -> None:
        """Remove the hooks from the model (``persistent`` hooks stay until this is called)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _stop_tracking(self) -> None:
        if self._tracking:
            self._tracking = False
            self._tracker.__exit__(None, None, None)

    def _note_foreign(self, param: Tensor, module: nn.Module) -> None:
        self._foreign.setdefault(id(param), (param, set()))[1].add(module)

    def _pre_hook(self, is_root: bool) -> Callable:
        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            if not self.active:
                return
            if is_root and self._sig is None:  # the forward pass starts: replay a plan or discover
                self._sig = (_signature((args, kwargs)), self.batch)
                self._plan = self._plans.get(self._sig)
                if self._plan is None:
                    self._tracker.mark((args, kwargs))
                    self._tracker.__enter__()
                    self._tracking = True
            if self._tracking:
                self._tracker.stack.append(mod)

        return hook

    def _forward_hook(self, module: nn.Module, is_owner: bool) -> Callable:
        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: object) -> object:
            if not self.active:
                return None
            plan = self._plan
            if plan is not None:
                return self._replay(plan, mod, args, kwargs, output)
            if self._tracker.stack and self._tracker.stack[-1] is mod:
                self._tracker.stack.pop()
            call = _Call(mod, list(self._owned.get(mod, [])), args, kwargs, output)
            replaced = self._broadcast(call) if is_owner else None
            if replaced is not None:
                self._broadcasted.add(mod)
            elif not self._is_batched(call):
                # e.g. a positional embedding of arange(T): its per-example gradients only exist
                # after broadcasting, so an enclosing batched module measures its parameters.
                self._unbatched.add(mod)
                return None
            if is_owner:
                if lookup_rule(mod) is None:
                    warn_fallback(mod)
                self._calls.append(call)
                self._hook_outputs(call)
            else:
                self._containers.setdefault(mod, []).append(call)
            return replaced

        return hook

    def _replay(self, plan: _Plan, mod: nn.Module, args: tuple, kwargs: dict, output: object) -> object:
        if mod in plan.skip or mod not in plan.names:
            return None
        call = _Call(mod, list(plan.names[mod]), args, kwargs, output, adopter=plan.adopter[mod])
        replaced = self._broadcast(call) if mod in plan.broadcast else None
        self._calls.append(call)
        if call.names:
            self._hook_outputs(call)
        return replaced

    def _broadcast(self, call: _Call) -> Tensor | None:
        """A call on a batch of one that the model broadcasts over the batch (a positional embedding
        of ``arange(T)[None]``): expand its input and output to the batch, so that its per-example
        gradients arrive unreduced. Broadcasting against batched tensors is unchanged by this."""
        if not self.batch or self.batch == 1 or batch_dim(call.module) != 0 or lookup_rule(call.module) is None:
            return None
        out = call.output
        if not isinstance(out, Tensor) or out.dim() == 0 or out.shape[0] != 1:
            return None
        ins = list(_tensors((call.args, call.kwargs)))
        if not ins or any(v.dim() == 0 or v.shape[0] != 1 for v in ins):
            return None
        expand = lambda v: v.expand(self.batch, *v.shape[1:]) if isinstance(v, Tensor) else v  # noqa: E731
        call.args = tuple(expand(v) for v in call.args)
        call.output = expand(out)
        return call.output

    def _is_batched(self, call: _Call) -> bool:
        bdim = batch_dim(call.module)
        ins = next(_tensors((call.args, call.kwargs)), None)
        outs = next(_tensors(call.output), None)
        if ins is None or outs is None:
            return False
        if self.batch is None:
            self.batch = ins.shape[0] if ins.dim() else None
        ok = lambda v: v.dim() > bdim and v.shape[bdim] == self.batch  # noqa: E731
        return ok(ins) and ok(outs) and self._tracker.is_marked(ins)

    def _hook_outputs(self, call: _Call) -> None:
        leaves, _ = tree_flatten(call.output)
        for k, o in enumerate(leaves):
            if isinstance(o, Tensor) and o.requires_grad:
                o.register_hook(self._grad_hook(call, k))

    def _grad_hook(self, call: _Call, k: int) -> Callable[[Tensor], None]:
        def hook(g: Tensor) -> None:
            call.grads[k] = g
            if self._streamable(call):
                self._consume(call)

        return hook

    # ------------------------------------------------------------ after forward
    def prepare(self) -> None:
        """Settle adoption and use counts once the forward pass is done, before the backward."""
        self._stop_tracking()
        if self._plan is None:
            self._discover()
        self._uses = {}
        for c in self._calls:
            for p in self._call_params(c):
                self._uses[id(p)] = self._uses.get(id(p), 0) + 1

    def _discover(self) -> None:
        """After a tracked forward pass: who measures which parameter; kept as the plan."""
        if self._unbatched:
            self._calls = [c for c in self._calls if c.module not in self._unbatched]
        called = {c.module for c in self._calls}
        wanted: list[tuple[nn.Module, nn.Parameter]] = []  # (where the use happened, parameter)
        for m, own in self._owned.items():
            if m not in called:  # never ran on the batch itself: measured where it was used
                mine = dict(m.named_parameters(recurse=False))
                wanted += [(self._parent.get(m), mine[n]) for n in own]
        for param, users in self._foreign.values():
            wanted += [(u, param) for u in users]
        adopt: dict[int, tuple[nn.Parameter, set[nn.Module]]] = {}
        for start, param in wanted:
            a = self._adopter(start, param)
            if a is not None:
                adopt.setdefault(id(param), (param, set()))[1].add(a)
        for param, adopters in adopt.values():
            outer = {a for a in adopters if not any(b is not a and self._inside(a, b) for b in adopters)}
            for a in outer:
                self._adopt(a, param)
        self._containers.clear()
        if self._sig is not None:
            self._plans[self._sig] = _Plan(
                names={c.module: list(c.names) for c in self._calls},
                adopter={c.module: c.adopter for c in self._calls},
                skip=set(self._unbatched),
                broadcast=set(self._broadcasted),
            )

    def _inside(self, m: nn.Module, ancestor: nn.Module) -> bool:
        while m in self._parent:
            m = self._parent[m]
            if m is ancestor:
                return True
        return False

    def _adopter(self, start: nn.Module | None, param: nn.Parameter) -> nn.Module | None:
        """The nearest module from ``start`` up that holds ``param`` and ran on the batch."""
        called = {c.module for c in self._calls}
        m = start
        while m is not None:
            if (m in called or m in self._containers) and m not in self._unbatched:
                if any(q is param for q in m.parameters()):
                    return m
            m = self._parent.get(m)
        return None

    def _adopt(self, a: nn.Module, param: nn.Parameter) -> None:
        """Measure ``param`` through ``a``'s calls: every use inside ``a`` is then included."""
        name = next(n for n, q in a.named_parameters(remove_duplicate=False) if q is param)
        rule = lookup_rule(a)
        if rule is not None and rule.covers_children and name not in self._owned.get(a, []):
            own_calls = [c for c in self._calls if c.module is a]
            if own_calls and "." in name:  # e.g. MultiheadAttention's out_proj: the rule covers it
                for c in own_calls:
                    if name not in c.names:
                        c.names.append(name)
                self._drop_inside(a, param)
                return
        calls = [c for c in self._calls if c.module is a]
        if not calls:
            calls = self._containers.get(a, [])
            if calls:
                warn_fallback(a)
            for c in calls:
                c.names = []
                c.adopter = True
                self._calls.append(c)
                self._hook_outputs(c)
            self._containers[a] = []
        for c in calls:
            if name not in c.names:
                c.names.append(name)
            if name not in self._owned.get(a, []) or self._foreign_in(a, param):
                c.adopter = True
        self._drop_inside(a, param)

    def _foreign_in(self, a: nn.Module, param: nn.Parameter) -> bool:
        return id(param) in self._foreign and a in self._foreign[id(param)][1]

    def _drop_inside(self, a: nn.Module, param: nn.Parameter) -> None:
        """Uses of ``param`` by modules inside ``a`` are already in ``a``'s measurement."""
        for c in self._calls:
            if c.module is not a and self._inside(c.module, a):
                mine = self._struct.params[c.module]
                c.names = [n for n in c.names if mine[n] is not param]

    def _call_params(self, call: _Call) -> list[nn.Parameter]:
        params = self._struct.params[call.module]
        return [params[n] for n in call.names]

    def anchors(self) -> list[Tensor]:
        """Tensors to differentiate against so that every hooked layer's backward node runs."""
        out: dict[int, Tensor] = {}
        for c in self._calls:
            if any(v.requires_grad for v in _tensors((c.args, c.kwargs))):
                continue
            mine = self._struct.params[c.module]
            ps = [mine[n] for n in set(c.names) | set(self._owned.get(c.module, []))]
            if ps:
                p = min(ps, key=lambda t: t.numel())
                out[id(p)] = p
        return list(out.values())

    # ----------------------------------------------------------- during backward
    def _streamable(self, call: _Call) -> bool:
        if call.adopter or lookup_rule(call.module) is None:
            return False
        if not isinstance(call.output, Tensor) and sum(1 for _ in _tensors(call.output)) != 1:
            return False  # several outputs: wait until all their gradients are in
        return all(self._uses.get(id(p), 1) == 1 for p in self._call_params(call))

    def _contributions(self, call: _Call) -> dict[str, Contribution]:
        rule = lookup_rule(call.module)
        if rule is not None and not call.adopter and set(call.grads) == {0}:
            try:
                if rule.needs_kwargs:
                    return rule.fn(call.module, call.args, call.grads[0], call.names, call.kwargs)
                return rule.fn(call.module, call.args, call.grads[0], call.names)
            except NotImplementedError:
                pass  # a configuration the rule does not cover: exact fallback below
        self.active = False
        try:
            return fallback_contributions(
                call.module, call.names, call.args, call.kwargs, call.output, call.grads, self.batch
            )
        finally:
            self.active = True

    def _consume(self, call: _Call) -> None:
        with torch.no_grad(), chunk_budget(next(iter(call.grads.values())).device):
            contribs = self._contributions(call)
            for c in contribs.values():
                self._add(c.sq_norms())
        call.args, call.kwargs, call.output, call.grads = (), {}, None, {}

    def _add(self, s: Tensor) -> None:
        self._sq = s if self._sq is None else self._sq + s

    # ------------------------------------------------------------ after backward
    def sq_norms(self, scale: float = 1.0) -> Tensor:
        """Per-example squared gradient norms over the scope; ``scale`` multiplies the gradients."""
        with torch.no_grad(), chunk_budget(next(iter(self.params.values())).device):
            for c in self._calls:
                if not c.grads:
                    continue  # consumed in the backward pass, or its output did not reach the loss
                params = self._struct.params[c.module]
                for n, contrib in self._contributions(c).items():
                    self._parts.setdefault(id(params[n]), []).append(contrib)
                c.args, c.kwargs, c.output, c.grads = (), {}, None, {}
            for parts in self._parts.values():
                self._add(combined_sq_norms(parts))
            self._parts.clear()
        if self._sq is None:
            dev = next(iter(self.params.values())).device
            dtype = next(iter(self.params.values())).dtype
            return torch.zeros(self.batch, device=dev, dtype=dtype)
        return self._sq * (scale * scale)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the duration; every module's own mode restored after."""
    training = [m for m in model.modules() if m.training]
    try:
        for m in training:
            m.training = False
        yield model
    finally:
        for m in training:
            m.training = True


@contextlib.contextmanager
def measuring(model: nn.Module, params: dict[str, nn.Parameter]) -> Iterator[None]:
    """Eval mode and constant out-of-scope parameters for the duration; everything restored after."""
    in_scope = {id(p) for p in params.values()}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in in_scope]
    try:
        for p in frozen:
            p.requires_grad_(False)
        with eval_mode(model):
            yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def check_batch(inputs: Tensor | tuple, targets: Tensor) -> int:
    """The batch size, after checking that inputs and targets agree on it."""
    first = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    if not isinstance(first, Tensor) or first.dim() == 0:
        raise GradNormError("inputs must be a batched tensor (or a tuple of them)")
    b = first.shape[0]
    if not isinstance(targets, Tensor) or targets.dim() == 0 or targets.shape[0] != b:
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise GradNormError(f"targets {shape} do not match the inputs' batch of {b} examples")
    return b


def per_example_losses(loss_fn: Callable, outputs: object, targets: Tensor, batch: int, check: bool = True) -> Tensor:
    """Apply ``loss_fn`` and check it returned one value per example (finite, unless ``check=False``:
    then call ``check_finite`` once the work is queued, so that a GPU is not waited for mid-pass)."""
    losses = loss_fn(outputs, targets)
    if not isinstance(losses, Tensor) or losses.shape != (batch,):
        shape = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
        raise GradNormError(
            f"the loss must return one value per example, shape ({batch},), got {shape}; "
            "use reduction='none' semantics"
        )
    if check:
        check_finite(losses)
    return losses


def check_finite(losses: Tensor) -> None:
    """Raise ``NonFiniteLossError`` naming the examples whose loss is not finite."""
    bad = ~torch.isfinite(losses.detach())
    if bool(bad.any()):
        raise NonFiniteLossError(bad.nonzero().flatten().tolist(), losses.shape[0])
