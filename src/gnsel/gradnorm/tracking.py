"""Forward-pass bookkeeping that module hooks cannot see, through a ``TorchFunctionMode``.

* Which tensors derive from the model's inputs: a layer applied to something else (a positional
  embedding of ``arange(T)``, a parametrisation) has no per-example gradient of its own, even when
  its leading size happens to equal the batch size.
* Which parameters are used outside their own module's forward (GPT-style ``F.linear(h, emb.weight)``,
  ``x @ self.fc.weight.T`` in a parent): the enclosing module that uses them must measure them.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

_MARK = "_gnsel_source"


def _tensors(obj: object, depth: int = 0):
    if isinstance(obj, Tensor):
        yield obj
    elif depth < 2 and isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v, depth + 1)
    elif depth < 2 and isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v, depth + 1)


class ForwardTracker(TorchFunctionMode):
    """Marks tensors computed from marked tensors, and records foreign uses of tracked parameters.

    ``on_foreign(param, module)`` is called when a tracked parameter is an argument of a torch
    function while ``module`` (innermost tracked module running) is not one of its owners.
    """

    def __init__(self, param_ids: set[int], owners: dict[int, set[int]], on_foreign: Callable[[Tensor, nn.Module], None]):
        super().__init__()
        self.token = object()
        self.stack: list[nn.Module] = []
        self._param_ids = param_ids
        self._owners = owners
        self._on_foreign = on_foreign

    def mark(self, obj: object) -> None:
        """Mark the tensors in ``obj`` (e.g. the model's inputs) as derived from the data."""
        for t in _tensors(obj):
            setattr(t, _MARK, self.token)

    def is_marked(self, t: Tensor) -> bool:
        return getattr(t, _MARK, None) is self.token

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        marked = False
        for t in _tensors((args, kwargs)):
            if id(t) in self._param_ids and self.stack:
                inner = self.stack[-1]
                if id(inner) not in self._owners.get(id(t), ()):
                    self._on_foreign(t, inner)
            elif not marked and getattr(t, _MARK, None) is self.token:
                marked = True
        out = func(*args, **kwargs)
        if marked:
            for t in _tensors(out):
                try:
                    setattr(t, _MARK, self.token)
                except (AttributeError, RuntimeError):
                    pass
        return out
