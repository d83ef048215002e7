"""One mechanism for the per-request state kept in context variables: a ``with`` block during which a
:class:`~contextvars.ContextVar` holds a value, restored when the block ends.

:class:`VarScope` is the base of the request scopes every call opens (:mod:`proximadb.deadline`'s
``scope``, :mod:`proximadb.consistency`'s ``request`` and ``reading``, :mod:`proximadb.idempotency`'s
``request`` and ``sending``). They are classes, not ``@contextmanager`` generators, because every request
opens several and a generator's set-up costs several times a class's. A subclass works out its value in
``__enter__`` and calls :meth:`VarScope._push`; setting the value the variable holds already is skipped
(nothing to restore), so a scope that changes nothing costs one ``get``.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any


class VarScope:
    __slots__ = ("_reset",)

    def __init__(self) -> None:
        self._reset: tuple[ContextVar[Any], Token[Any]] | None = None

    def _push(self, var: ContextVar[Any], value: Any) -> None:
        """Make ``var`` hold ``value`` until the block ends."""
        if var.get() is not value:
            self._reset = (var, var.set(value))

    def __exit__(self, *exc: object) -> None:
        if self._reset is not None:
            var, token = self._reset
            var.reset(token)
            self._reset = None
