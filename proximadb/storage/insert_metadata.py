"""An insert's metadata, kept encoded or taken as dicts: the one rule every path that applies an insert follows.

A batch decoded with ``metadata_maps=True`` (codec/avro_batch.pyx) carries its maps as the payload sent
them (a :class:`~proximadb.storage.metadata_store.MetadataColumn`). :func:`scan` reads them once in
compiled code (storage/metadata_scan.pyx): the sizes the limit checks, and the entries the memtable's
payload index posts (``InsertOp.scanned``). Live writes (``collection_writes._check_insert``), WAL
replay (``wal_codec.decode_op_payload``) and cluster log entries (``collection_apply``) all go through it,
so a malformed map or a string that is not UTF-8 raises MalformedPayloadError wherever it is met.

A row the scan leaves to the Python rule that the rule then accepts (a key given twice in one map: a dict
keeps the last value) makes :func:`take_as_dicts` turn the whole batch into decoded dicts: the memtable
then stores and indexes what a dict holds, never the map's extra copies.
"""

from __future__ import annotations

import numpy as np

from proximadb.storage.metadata_scan import scan_maps
from proximadb.storage.metadata_store import MetadataColumn
from proximadb.storage.operations import InsertOp
from proximadb.storage.validation import MAX_METADATA_KEY_BYTES


def scan(op: InsertOp) -> np.ndarray | None:
    """The sizes of an encoded batch's maps (-1: the rule decides), scanning them once (``op.scanned``);
    None for a batch of dicts."""
    if not isinstance(op.metadata, MetadataColumn):
        return None
    if op.scanned is None:
        op.scanned = scan_maps(op.metadata.blob, op.metadata.offsets, MAX_METADATA_KEY_BYTES)
    sizes: np.ndarray = op.scanned[0]
    return sizes


def take_as_dicts(op: InsertOp) -> None:
    """Decode the batch's maps into dicts; they are stored and indexed as dicts from now on."""
    op.metadata = list(op.metadata)
    op.scanned = None


def settle(op: InsertOp) -> None:
    """For a batch checked when it was written (replay): scan it, or take it as dicts where the scan defers."""
    sizes = scan(op)
    if sizes is not None and bool((sizes < 0).any()):
        take_as_dicts(op)
