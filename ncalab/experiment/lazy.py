"""A value one stage makes and later stages read, made when first read (so a resumed
experiment whose later runs are done never loads a model it does not need)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    def __init__(self, name: str):
        self.name = name
        self._make: Callable[[], T] | None = None
        self._value: T | None = None
        self._has = False

    def set(self, value: T) -> None:
        self._value, self._has, self._make = value, True, None

    def make_with(self, make: Callable[[], T]) -> None:
        """How to make it when first read (replacing any value held)."""
        self._value, self._has, self._make = None, False, make

    def get(self) -> T:
        if not self._has:
            if self._make is None:
                raise RuntimeError(f"no stage provides {self.name} before it is needed")  # a pipeline bug
            self.set(self._make())
        return self._value  # type: ignore[return-value]
