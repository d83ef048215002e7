"""What the framework integrations share: a collection created lazily with the embedding's dimension,
and framework metadata split into what ProximaDB stores as metadata values and what it cannot.

ProximaDB metadata values are null, bool, 64-bit int, finite double, string and list of strings
(:mod:`proximadb.storage.validation`); frameworks allow any JSON-like value. A value ProximaDB can
store is stored under its own key, so filters can reach it; the others are kept as one JSON text
under a reserved key by the integration that needs them back.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from proximadb.client_api import ProximaDBAPI
from proximadb.codec.metadata import plain_metadata_value
from proximadb.errors import CollectionExistsError, CollectionNotFoundError, DimensionMismatchError, ValidationError


def check_client(client: object) -> ProximaDBAPI:
    """``client`` if it is a sync ProximaDB client; a TypeError naming what was given otherwise."""
    if isinstance(client, ProximaDBAPI):
        return client
    search = getattr(client, "search_batch", None)
    if search is not None and inspect.iscoroutinefunction(search):
        raise TypeError(
            "client: an async ProximaDB client is not supported yet; pass a sync one "
            "(proximadb.connect(...) or proximadb.connect_embedded(...)); the async methods run it in an executor"
        )
    raise TypeError(
        f"client: expected a ProximaDB client (proximadb.connect(...) or proximadb.connect_embedded(...)), "
        f"got {type(client).__name__}"
    )


def existing_collection(client: ProximaDBAPI, name: str) -> dict[str, Any] | None:
    """The collection's description, or None when it does not exist (yet)."""
    try:
        return client.get_collection(name)
    except CollectionNotFoundError:
        return None


def ensure_collection(
    client: ProximaDBAPI, name: str, dimension: int, create_options: Mapping[str, Any]
) -> dict[str, Any]:
    """The collection ``name``, created with ``dimension`` (and ``create_options``) if it does not exist;
    a DimensionMismatchError when it exists with another dimension."""
    info = existing_collection(client, name)
    if info is None:
        try:
            client.create_collection(name, dimension, **create_options)
        except CollectionExistsError:  # created by someone else in between: use theirs
            pass
        info = client.get_collection(name)
    if int(info["dimension"]) != dimension:
        raise DimensionMismatchError(
            f"collection {name!r} has dimension {info['dimension']}, the embedding gives {dimension}"
        )
    return info


T = TypeVar("T")


class LazyCollection:
    """One collection as a framework store sees it: created by the first write with the embedding's
    dimension, read as empty while it does not exist, and found again (or re-created) when someone
    else drops it."""

    def __init__(self, client: ProximaDBAPI, name: str, create_options: Mapping[str, Any]) -> None:
        self.client = client
        self.name = name
        self.create_options = dict(create_options)
        self.info: dict[str, Any] | None = None

    @property
    def metric(self) -> str:
        info = self.info if self.info is not None else existing_collection(self.client, self.name)
        return str((info or self.create_options).get("distance_metric", "cosine"))

    def exists(self) -> bool:
        if self.info is None:
            self.info = existing_collection(self.client, self.name)
        return self.info is not None

    def read(self, call: Callable[[], T], empty: T) -> T:
        """``call()``, or ``empty`` while the collection does not exist."""
        if not self.exists():
            return empty
        try:
            return call()
        except CollectionNotFoundError:  # dropped since we looked
            self.info = None
            return empty

    def write(self, dimension: int, call: Callable[[], T]) -> T:
        """``call()`` on the collection, created first (with ``dimension``) when it does not exist."""
        if self.info is None:
            self.info = ensure_collection(self.client, self.name, dimension, self.create_options)
        try:
            return call()
        except CollectionNotFoundError:  # dropped since we looked: create it again, once
            self.info = ensure_collection(self.client, self.name, dimension, self.create_options)
            return call()

    def drop(self) -> None:
        try:
            self.client.delete_collection(self.name)
        except CollectionNotFoundError:
            pass
        self.info = None


def storable(value: Any, key: str) -> Any:
    """``value`` as ProximaDB stores it, or :data:`NOT_STORABLE`."""
    try:
        plain = plain_metadata_value(value, key, "metadata")
    except ValidationError:
        return NOT_STORABLE
    if isinstance(plain, float) and not math.isfinite(plain):
        return NOT_STORABLE
    return plain


NOT_STORABLE: Any = object()


def split_metadata(metadata: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(stored, rest)``: the values ProximaDB stores as they are, and the others."""
    stored: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise ValidationError(f"metadata keys must be strings, got {key!r}")
        plain = storable(value, key)
        if plain is NOT_STORABLE:
            rest[key] = value
        else:
            stored[key] = plain
    return stored, rest


def check_reserved(metadata: Mapping[str, Any] | None, reserved: tuple[str, ...]) -> None:
    for key in reserved:
        if metadata and key in metadata:
            raise ValidationError(f"metadata key {key!r} is reserved by the ProximaDB integration")


__all__ = [
    "LazyCollection", "check_client", "check_reserved", "ensure_collection", "existing_collection", "split_metadata",
]
