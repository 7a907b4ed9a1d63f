"""One registry idiom for every kind of thing gnsel has many of (layer rules, datasets, models, measures,
search algorithms, study parts): decorator registration, a listing, and an error that names the choices.

    MODELS = Registry("model")

    @MODELS.register("mlp")
    def mlp(num_classes, input_shape, width=256): ...

    MODELS.get("mlp")       # the builder
    MODELS.names()          # ['mlp', ...] in registration order
    MODELS.get("mpl")       # UnknownNameError: unknown model 'mpl'; choices: mlp, ...

Keys are names by default; a registry may be keyed by other hashable values (the engine keys its
layer rules by module type), listed by ``label``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name no registry entry has; a ``KeyError`` and a ``ValueError``, its text the plain message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _label(key: Hashable) -> str:
    return key.__name__ if isinstance(key, type) else str(key)


class Registry(Generic[T]):
    """Entries of one kind by key, in registration order; ``kind`` names them in messages."""

    def __init__(self, kind: str, *, validate: Callable[[Hashable], None] | None = None) -> None:
        self.kind = kind
        self._validate = validate
        self._entries: dict[Hashable, T] = {}

    def register(self, key: Hashable, entry: T | None = None, *, replace: bool = False):
        """``@registry.register(key)`` on a function or class, or ``registry.register(key, entry)``.

        A key registered twice is an error unless ``replace`` (a user overriding a built-in on purpose).
        """
        if self._validate is not None:
            self._validate(key)

        def add(obj: T) -> T:
            if key in self._entries and not replace and self._entries[key] is not obj:
                raise ValueError(f"{self.kind} {_label(key)!r} is already registered")
            self._entries[key] = obj
            return obj

        return add if entry is None else add(entry)

    def unregister(self, key: Hashable) -> T:
        """Remove an entry (tests register toy entries and remove them again)."""
        return self._entries.pop(key)

    def get(self, key: Hashable) -> T:
        """The entry for ``key``; :class:`UnknownNameError` naming the choices if there is none."""
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            raise UnknownNameError(self.unknown(key)) from None

    def unknown(self, key: Hashable) -> str:
        """The one-line message for a key that is not registered."""
        return f"unknown {self.kind} {_label(key)!r}; choices: {', '.join(self.names()) or '(none)'}"

    def names(self) -> list[str]:
        """Every key's label, in registration order."""
        return [_label(k) for k in self._entries]

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def items(self) -> list[tuple[Hashable, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

    def __contains__(self, key: object) -> bool:
        try:
            return key in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
