"""Avro binary encoder of the ``VectorBatch`` datum (op ``vector_insert``), from numpy columns.

The bytes are documented in avro_batch.pyx (the decoder, which re-exports :func:`encode_vector_batch`)
codec/_sparse.pxd (v3's sparse vectors) and codec/_named.pxd (v4's named dense vectors). Each vector,
named or not, is written as a single block (count, then a memcpy of the row), each sparse vector's
indices and values as one block each, and the records array as one block.
"""

cimport numpy as cnp
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport INT64_MIN, int32_t, int64_t

from proximadb.codec._avro cimport (
    AvroWriter,
    avro_write_metadata_value,
    aw_bytes,
    aw_floats,
    aw_free,
    aw_init,
    aw_long,
    aw_raw,
    aw_reserve,
    aw_str,
)
from proximadb.codec._named cimport named_write_record
from proximadb.codec._sparse cimport SparseSource, sparse_write_record

from collections.abc import Mapping

import numpy as np

from proximadb.codec.metadata import plain_metadata_value
from proximadb.errors import ValidationError
from proximadb.storage import named_columns, sparse_column

cnp.import_array()

NO_EXPIRY = INT64_MIN  # expires_at of a record that never expires (Avro null)


def check_codec_version(int schema_version) -> None:
    """Refuse a schema version the VectorBatch codec does not speak."""
    if schema_version < 1 or schema_version > 4:
        from proximadb.errors import UnsupportedSchemaVersionError

        raise UnsupportedSchemaVersionError(
            f"schema version {schema_version} is not supported by the VectorBatch codec (supported: 1, 2, 3, 4)"
        )


cdef int _w_str(AvroWriter *w, str s, object key, Py_ssize_t i) except -1:
    """Record i's id (key None) or metadata key as length + UTF-8; key and i only name it in the error."""
    try:
        return aw_str(w, s)
    except UnicodeEncodeError as exc:
        where = f"ids[{i}]" if key is None else f"metadata key {key!r} of record {i}"
        raise ValidationError(f"{where} cannot be encoded as UTF-8: {exc.reason}") from None


cdef int _w_value(AvroWriter *w, str key, object value, Py_ssize_t i) except -1:
    """One metadata union value: exact plain types by the shared writer, the rest by the one rule."""
    try:
        if avro_write_metadata_value(w, value) == 0:
            return 0
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"metadata value of key {key!r} of record {i} cannot be encoded as UTF-8: {exc.reason}"
        ) from None
    # numpy scalars, subclasses, tuples, and every refusal: the one rule (codec/metadata.py)
    return _w_value(w, key, plain_metadata_value(value, key, f"record {i}"), i)


cdef int _w_metadata(AvroWriter *w, object md, Py_ssize_t i) except -1:
    if md is None:
        return aw_long(w, 0)
    if type(md) is not dict and not isinstance(md, Mapping):
        raise ValidationError(f"metadata of record {i} must be a dict or None, got {type(md).__name__}")
    if len(md) == 0:
        return aw_long(w, 0)
    aw_long(w, len(md))
    for key, value in md.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise ValidationError(
                    f"metadata key {key!r} of record {i} is a {type(key).__name__}; keys must be str"
                )
            key = str(key)
        _w_str(w, key, key, i)
        _w_value(w, key, value, i)
    return aw_long(w, 0)


cdef object _as_timestamps(object timestamps, Py_ssize_t n):
    try:
        ts = np.asarray(timestamps)
        if ts.dtype.kind == "O":  # Python ints beyond 64 bits (or a mix of types)
            if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in ts.flat):
                raise ValidationError("timestamps must be integers (microseconds since the epoch)")
            ts = np.asarray(ts.tolist(), dtype=np.int64)
        if ts.size and ts.dtype.kind not in "iu":
            raise ValidationError(
                f"timestamps must be integers (microseconds since the epoch), got dtype {ts.dtype}"
            )
        if ts.dtype.kind == "u" and ts.size and int(ts.max()) > 0x7FFFFFFFFFFFFFFF:
            raise ValidationError("timestamps must fit in a signed 64-bit integer")
        ts = np.ascontiguousarray(ts, dtype=np.int64)
    except (OverflowError, ValueError, TypeError) as exc:
        raise ValidationError(f"timestamps must fit in a signed 64-bit integer: {exc}") from None
    if ts.shape != (n,):
        raise ValidationError(f"timestamps must have shape ({n},), got {ts.shape}")
    return ts


cdef object _as_expiry(object expires_at, Py_ssize_t n):
    """(n,) int64 with NO_EXPIRY for None entries, from a sequence of int | None or an int64 array."""
    if isinstance(expires_at, np.ndarray) and expires_at.dtype.kind in "iu":
        out = np.ascontiguousarray(expires_at, dtype=np.int64)
    else:
        items = list(expires_at)
        for x in items:
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, np.integer))):
                raise ValidationError(
                    f"expires_at must be integers (microseconds since the epoch) or None, got {type(x).__name__}"
                )
        try:
            out = np.array([NO_EXPIRY if x is None else int(x) for x in items], dtype=np.int64)
        except OverflowError:
            raise ValidationError("expires_at must fit in a signed 64-bit integer") from None
    if out.shape != (n,):
        raise ValidationError(f"expires_at must have shape ({n},), got {out.shape}")
    return out


def encode_vector_batch(ids, vectors, metadata=None, timestamps=None, bint upsert=False, expires_at=None,
                        int schema_version=1, sparse_vectors=None, named_vectors=None) -> bytes:
    """Encode a ``VectorBatch`` Avro datum (the datum only, no frame) in ``schema_version``'s layout.

    ``expires_at`` (v2 on; None, or per record an int or None / NO_EXPIRY) is refused at v1
    when any record has one, so a v1 peer never silently loses an expiry. ``sparse_vectors`` (v3 on;
    per record a mapping ``{name: {"indices", "values"}}`` or None, or ``dict[str, SparseColumn]``)
    is checked (ValidationError) and refused below v3 likewise. ``named_vectors`` (v4 on; ``{name: (n, dim)
    array}`` or per record ``{name: vector}``, every record the same names) likewise: finite, dimension >= 1
    (storage/named_columns.py; the collection's declared dimensions are the decoder's to check).
    """
    cdef cnp.ndarray mat
    cdef cnp.ndarray ts = None
    cdef cnp.ndarray ex = None
    cdef const int64_t *expiry = NULL
    cdef int64_t x
    cdef Py_ssize_t n
    cdef Py_ssize_t dim
    cdef Py_ssize_t i
    cdef const float *rows
    cdef const int64_t *stamps = NULL
    cdef AvroWriter w
    cdef unsigned char flag = 1 if upsert else 0
    cdef object record_id
    cdef SparseSource *sources = NULL
    cdef const char **names = NULL
    cdef Py_ssize_t *name_lens = NULL
    cdef Py_ssize_t n_names = 0
    cdef Py_ssize_t j
    cdef const char **nv_names = NULL
    cdef Py_ssize_t *nv_lens = NULL  # name lengths, then dimensions
    cdef const float **nv_cols = NULL
    cdef Py_ssize_t nv_count = 0
    cdef Py_ssize_t nv_width = 0  # floats per record over all names
    cdef cnp.ndarray nv_col
    cdef bytes raw
    if isinstance(ids, (str, bytes)):
        raise ValidationError("ids must be a sequence of str, not a single string")
    ids = list(ids)
    try:
        mat = np.ascontiguousarray(vectors, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"vectors must be a 2-D array of numbers: {exc}") from None
    if mat.ndim != 2:
        raise ValidationError(f"vectors must be a 2-D array (n, dim), got {mat.ndim} dimension(s)")
    n = mat.shape[0]
    dim = mat.shape[1]
    if len(ids) != n:
        raise ValidationError(f"got {len(ids)} ids for {n} vectors")
    if metadata is not None:
        metadata = list(metadata)
        if len(metadata) != n:
            raise ValidationError(f"got {len(metadata)} metadata entries for {n} vectors")
    if timestamps is not None:
        ts = _as_timestamps(timestamps, n)
        stamps = <const int64_t *>cnp.PyArray_DATA(ts)
    check_codec_version(schema_version)
    if expires_at is not None:
        ex = _as_expiry(expires_at, n)
        if schema_version < 2:
            if n and bool((ex != NO_EXPIRY).any()):
                raise ValidationError("expires_at needs schema version 2 or later")
        else:
            expiry = <const int64_t *>cnp.PyArray_DATA(ex)
    rows = <const float *>cnp.PyArray_DATA(mat)
    columns = sparse_column.as_columns(sparse_vectors, n)
    if columns is not None and schema_version < 3:
        raise ValidationError("sparse_vectors need schema version 3 or later")
    named = named_columns.as_columns(named_vectors, n, ids)
    if named is not None and schema_version < 4:
        raise ValidationError("named_vectors need schema version 4 or later")
    keep = []  # the arrays and name bytes the pointers below point into
    if schema_version >= 3 and columns is not None:
        n_names = len(columns)
        sources = <SparseSource *>PyMem_Malloc(n_names * sizeof(SparseSource))
        names = <const char **>PyMem_Malloc(n_names * sizeof(char *))
        name_lens = <Py_ssize_t *>PyMem_Malloc(n_names * sizeof(Py_ssize_t))
        if sources == NULL or names == NULL or name_lens == NULL:
            PyMem_Free(sources)
            PyMem_Free(names)
            PyMem_Free(name_lens)
            raise MemoryError()
        for j, (name, col) in enumerate(columns.items()):
            keep.append((name.encode("ascii"), col.row_start, col.indices, col.values))
            names[j] = <const char *>keep[j][0]
            name_lens[j] = len(keep[j][0])
            sources[j].row_start = <const int64_t *>cnp.PyArray_DATA(col.row_start)
            sources[j].indices = <const int32_t *>cnp.PyArray_DATA(col.indices)
            sources[j].values = <const float *>cnp.PyArray_DATA(col.values)

    aw_init(&w)
    try:
        if named is not None:
            nv_count = len(named)
            nv_names = <const char **>PyMem_Malloc(nv_count * sizeof(char *))
            nv_lens = <Py_ssize_t *>PyMem_Malloc(2 * nv_count * sizeof(Py_ssize_t))
            nv_cols = <const float **>PyMem_Malloc(nv_count * sizeof(float *))
            if nv_names == NULL or nv_lens == NULL or nv_cols == NULL:
                raise MemoryError()
            for j, (name, nv_col) in enumerate(named.items()):
                raw = name.encode("ascii")
                keep.append((raw, nv_col))
                nv_names[j] = <const char *>raw
                nv_lens[j] = len(raw)
                nv_lens[nv_count + j] = nv_col.shape[1]
                nv_cols[j] = <const float *>cnp.PyArray_DATA(nv_col)
                nv_width += nv_col.shape[1]
        aw_reserve(&w, 16 + n * (dim * 4 + 32 + nv_width * 4 + nv_count * 80))
        aw_raw(&w, &flag, 1)
        if n:
            aw_long(&w, n)
        for i in range(n):
            record_id = ids[i]
            if not isinstance(record_id, str):
                raise ValidationError(f"ids[{i}] must be a str, got {type(record_id).__name__}")
            _w_str(&w, record_id, None, i)
            if dim:
                aw_long(&w, dim)
                aw_floats(&w, rows + i * dim, dim)
            aw_long(&w, 0)
            _w_metadata(&w, metadata[i] if metadata is not None else None, i)
            aw_long(&w, stamps[i] if stamps != NULL else 0)
            if schema_version >= 2:
                x = expiry[i] if expiry != NULL else INT64_MIN
                if x == INT64_MIN:
                    aw_long(&w, 0)
                else:
                    aw_long(&w, 1)
                    aw_long(&w, x)
            if schema_version >= 3:
                sparse_write_record(&w, sources, names, name_lens, n_names, i)
            if schema_version >= 4:
                named_write_record(&w, nv_names, nv_lens, nv_cols, nv_lens + nv_count, nv_count, i)
        aw_long(&w, 0)
        return aw_bytes(&w)
    finally:
        aw_free(&w)
        PyMem_Free(sources)
        PyMem_Free(names)
        PyMem_Free(name_lens)
        PyMem_Free(nv_names)
        PyMem_Free(nv_lens)
        PyMem_Free(nv_cols)
