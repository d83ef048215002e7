"""Renamed keyword arguments: the one vocabulary of the API, with the old names kept for one release.

The engine's :class:`~proximadb.storage.collection.Collection` used ``metadata=`` (a list, one per
vector) and ``filter_spec=`` where the SDK and the rest of the API say ``metadatas=`` and
``filter=``. :func:`renamed` lets a method take the new names while its body keeps its parameter
names; a caller that still uses an old name gets a :class:`DeprecationWarning` naming the new one::

    @renamed(metadata="metadatas")
    def insert(self, records=None, *, ids=None, vectors=None, metadata=None, upsert=False): ...

Whichever of the two names the function itself declares receives the value (a function taking
``**kwargs`` receives the new name), so wrapped methods can pass arguments on to each other.
``help()`` and :func:`inspect.signature` show the new names.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed(**old_to_new: str) -> Callable[[F], F]:
    """Accept ``new=`` for each ``old=`` parameter; ``old=`` still works with a DeprecationWarning."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        declared = set(signature.parameters)
        # The name the function's own body reads: the old one while it is declared, else the new one.
        target = {old: (old if old in declared else new) for old, new in old_to_new.items()}
        owner = func.__qualname__

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs and new in kwargs:
                    raise TypeError(f"{owner}() got both {old}= and {new}=; give only {new}=")
                if old in kwargs:
                    warnings.warn(
                        f"{owner}({old}=) is deprecated; use {new}= (the old name goes away in the next release)",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[target[old]] = kwargs.pop(old)
                elif new in kwargs and target[old] != new:
                    kwargs[target[old]] = kwargs.pop(new)
            return func(*args, **kwargs)

        params = [p.replace(name=old_to_new.get(p.name, p.name)) for p in signature.parameters.values()]
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = ["renamed"]
