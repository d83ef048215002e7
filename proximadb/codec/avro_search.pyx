# cython: language_level=3
"""Avro binary codec for the search round trip: ``SearchRequest`` (op ``vector_search``) and
``SearchResult`` (op ``search_result``), written and read without fastavro and without a Python
float per query component.

The datums (schemas/v<N>/search_request.avsc, search_result.avsc; the same in v1 and v2 but for
``expires_at``) in Avro binary (primitives as in :mod:`proximadb.codec.avro_batch`)::

    SearchRequest = queries:array<array<float>>  k:int  filter:union{null, string}
                    include_vectors:boolean  include_metadata:boolean
                    ef:union{null, int}  nprobe:union{null, int}  exact:boolean
                    [v4: using:union{null, string}]
    SearchResult  = results:array<array<SearchHit>>
    SearchHit     = id:string  score:float  distance:float  metadata:union{null, map<Value>}
                    vector:union{null, array<float>}  [v2: expires_at:union{null, long}]
                    [v4: named_vectors:union{null, map<array<float>>}]

The writers put every array in one block (a count, the items, then 0) and each query or hit
vector as one memcpy of float32 little-endian.

:func:`decode_search_request` is the server's fast path: it reads any block layout, but hands
back None for everything that is not a plain, well-formed request with one dimension for all
queries (bad lengths, booleans or union indexes, an int out of range, bad UTF-8, rows of
different lengths, no query, trailing bytes); the caller then decodes the payload the general way
(:func:`proximadb.codec.payload.decode_payload`), whose errors are the API's. So the fast path
never accepts what the general one refuses, nor words an error differently.

:func:`decode_search_result` is the client's: malformed bytes raise MalformedPayloadError.
"""

cimport numpy as cnp
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport INT64_MIN, int64_t
from libc.string cimport memcpy

from proximadb.codec._cursor cimport Cursor, cur_init, cur_read, cur_read_varlong
from proximadb.codec._avro cimport (
    AVRO_OK,
    AvroError,
    AvroWriter,
    avro_read_block,
    avro_read_boolean,
    avro_read_long,
    avro_read_metadata,
    avro_read_string,
    avro_write_metadata_value,
    aw_boolean,
    aw_bytes,
    aw_float,
    aw_floats,
    aw_free,
    aw_init,
    aw_long,
    aw_raw,
    aw_reserve,
    aw_str,
)
from proximadb.codec._endian cimport pxd_copy_f32le

from collections.abc import Mapping

import numpy as np

from proximadb.codec.metadata import plain_metadata_value
from proximadb.errors import MalformedPayloadError

cnp.import_array()

cdef int64_t INT32_MIN = -2147483648
cdef int64_t INT32_MAX = 2147483647


# ---------------------------------------------------------------- shared pieces

cdef int _w_floats(AvroWriter *w, const float *p, Py_ssize_t n) except -1:
    """n floats as one array block (count, items, end)."""
    if n:
        aw_long(w, n)
        aw_floats(w, p, n)
    return aw_long(w, 0)


cdef int _w_optional_int(AvroWriter *w, object value) except -1:
    if value is None:
        return aw_long(w, 0)
    aw_long(w, 1)
    return aw_long(w, value)


# ---------------------------------------------------------------- SearchRequest

def encode_search_request(queries, int k, str filter, bint include_vectors, bint include_metadata,
                          ef, nprobe, bint exact, str using=None, int schema_version=1) -> bytes:
    """A SearchRequest datum (no frame) from a float32 (n, dim) matrix; ef/nprobe None or an int32.
    From schema version 4 on the datum ends with ``using`` (the named vector searched; None: the default
    one); an older version has no field for it, so a name there is a ValueError rather than dropped."""
    cdef cnp.ndarray mat = np.ascontiguousarray(queries, dtype=np.float32)
    cdef Py_ssize_t n
    cdef Py_ssize_t dim
    cdef Py_ssize_t i
    cdef const float *rows
    cdef AvroWriter w
    if mat.ndim != 2:
        raise ValueError("queries must be a 2-D matrix")
    if using is not None and schema_version < 4:
        raise ValueError(f"schema version {schema_version} has no 'using' field (named vectors need version 4)")
    n = mat.shape[0]
    dim = mat.shape[1]
    rows = <const float *>cnp.PyArray_DATA(mat)
    aw_init(&w)
    try:
        aw_reserve(&w, 64 + n * (dim * 4 + 12) + (len(filter) * 4 if filter is not None else 0)
                   + (len(using) * 4 if using is not None else 0))
        if n:
            aw_long(&w, n)
            for i in range(n):
                _w_floats(&w, rows + i * dim, dim)
        aw_long(&w, 0)
        aw_long(&w, k)
        if filter is None:
            aw_long(&w, 0)
        else:
            aw_long(&w, 1)
            aw_str(&w, filter)
        aw_boolean(&w, include_vectors)
        aw_boolean(&w, include_metadata)
        _w_optional_int(&w, ef)
        _w_optional_int(&w, nprobe)
        aw_boolean(&w, exact)
        if schema_version >= 4:
            if using is None:
                aw_long(&w, 0)
            else:
                aw_long(&w, 1)
                aw_str(&w, using)
        return aw_bytes(&w)
    finally:
        aw_free(&w)


cdef int _r_int(Cursor *c, int64_t *out, AvroError *e) noexcept:
    if avro_read_long(c, out, "an int", e) < 0:
        return -1
    if out[0] < INT32_MIN or out[0] > INT32_MAX:
        return -1
    return 0


cdef object _r_optional_int(Cursor *c, AvroError *e, bint *ok):
    cdef int64_t branch
    cdef int64_t v
    ok[0] = False
    if avro_read_long(c, &branch, "a union index", e) < 0:
        return None
    if branch == 0:
        ok[0] = True
        return None
    if branch != 1 or _r_int(c, &v, e) < 0:
        return None
    ok[0] = True
    return v


cdef object _decode_request(const unsigned char *buf, Py_ssize_t nbytes, int schema_version):
    cdef Cursor c
    cdef AvroError e
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t inner
    cdef Py_ssize_t inner_size
    cdef Py_ssize_t q
    cdef Py_ssize_t n = 0
    cdef Py_ssize_t dim = -1
    cdef Py_ssize_t row_len
    cdef Py_ssize_t start
    cdef int64_t k
    cdef int64_t branch
    cdef int include_vectors
    cdef int include_metadata
    cdef int exact
    cdef bint ok
    cdef const unsigned char *p
    cdef cnp.ndarray mat
    cdef float *out
    e.kind = AVRO_OK
    cur_init(&c, buf, nbytes)
    # pass 1: the shape (every row the same length), floats skipped
    while True:
        if avro_read_block(&c, 1, &count, &size, "the queries block", &e) < 0 or size >= 0:
            return None  # sized blocks (negative counts) are left to the general path
        if count == 0:
            break
        for q in range(count):
            row_len = 0
            while True:
                if avro_read_block(&c, 4, &inner, &inner_size, "a query block", &e) < 0 or inner_size >= 0:
                    return None
                if inner == 0:
                    break
                if cur_read(&c, inner * 4) == NULL:
                    return None
                row_len += inner
            if dim < 0:
                dim = row_len
            elif row_len != dim:
                return None
            n += 1
    if n == 0 or dim <= 0:
        return None
    start = c.pos
    if _r_int(&c, &k, &e) < 0:
        return None
    if avro_read_long(&c, &branch, "the filter's union index", &e) < 0:
        return None
    if branch == 0:
        flt = None
    elif branch == 1:
        flt = avro_read_string(&c, "the filter", &e)
        if flt is None:
            return None
    else:
        return None
    if avro_read_boolean(&c, &include_vectors, "include_vectors", &e) < 0:
        return None
    if avro_read_boolean(&c, &include_metadata, "include_metadata", &e) < 0:
        return None
    ef = _r_optional_int(&c, &e, &ok)
    if not ok:
        return None
    nprobe = _r_optional_int(&c, &e, &ok)
    if not ok:
        return None
    if avro_read_boolean(&c, &exact, "exact", &e) < 0:
        return None
    using = None
    if schema_version >= 4:
        if avro_read_long(&c, &branch, "the using union index", &e) < 0:
            return None
        if branch == 1:
            using = avro_read_string(&c, "using", &e)
            if using is None:
                return None
        elif branch != 0:
            return None
    if c.pos != c.end:
        return None
    # pass 2: the floats, straight into the matrix (the layout is known good)
    mat = np.empty((n, dim), dtype=np.float32)
    out = <float *>cnp.PyArray_DATA(mat)
    cur_init(&c, buf, start)
    while True:
        avro_read_block(&c, 1, &count, &size, "the queries block", &e)
        if count == 0:
            break
        for q in range(count):
            while True:
                avro_read_block(&c, 4, &inner, &inner_size, "a query block", &e)
                if inner == 0:
                    break
                p = cur_read(&c, inner * 4)
                pxd_copy_f32le(out, p, inner)
                out += inner
    out_dict = {"queries": mat, "k": k, "filter": flt, "include_vectors": include_vectors == 1,
                "include_metadata": include_metadata == 1, "ef": ef, "nprobe": nprobe, "exact": exact == 1}
    if schema_version >= 4:
        out_dict["using"] = using
    return out_dict


def decode_search_request(datum, int schema_version=1):
    """The request as a dict (``queries`` a float32 (n, dim) matrix; from schema version 4 on also
    ``using``, None or a vector name), or None: decode it the general way."""
    cdef Py_buffer view
    PyObject_GetBuffer(datum, &view, PyBUF_SIMPLE)
    try:
        return _decode_request(<const unsigned char *>view.buf, view.len, schema_version)
    finally:
        PyBuffer_Release(&view)


# ---------------------------------------------------------------- SearchResult

cdef int _w_metadata(AvroWriter *w, object md) except -1:
    """union{null, map<Value>}: branch 1 and the map (the server's own checked values)."""
    if md is None:
        return aw_long(w, 0)
    aw_long(w, 1)
    if len(md):
        aw_long(w, len(md))
        for key, value in md.items():
            aw_str(w, key)
            if avro_write_metadata_value(w, value) != 0:
                avro_write_metadata_value(w, plain_metadata_value(value, key, "a search hit"))
    return aw_long(w, 0)


cdef int _w_named(AvroWriter *w, object named) except -1:
    """union{null, map<array<float>>}: null when there is none."""
    cdef cnp.ndarray vec
    if not named:
        return aw_long(w, 0)
    aw_long(w, 1)
    aw_long(w, len(named))
    for name, v in named.items():
        aw_str(w, name)
        vec = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
        _w_floats(w, <const float *>cnp.PyArray_DATA(vec), vec.shape[0])
    return aw_long(w, 0)


cdef object _r_named(Cursor *c, AvroError *e):
    """map<array<float>> as {name: float32 array}, or None when malformed."""
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t i
    cdef Py_ssize_t block_start
    cdef dict out = {}
    while True:
        if avro_read_block(c, 2, &count, &size, "a named vectors block", e) < 0:
            return None
        if count == 0:
            return out
        block_start = c.pos
        for i in range(count):
            name = avro_read_string(c, "a named vector's name", e)
            if name is None:
                return None
            vec = _r_vector(c, e)
            if vec is None:
                return None
            out[name] = vec
        if size >= 0 and c.pos - block_start != size:
            return None


def encode_search_result(results, int schema_version=1) -> bytes:
    """A SearchResult datum (no frame) from hits as search returns them (dicts: id, score, distance,
    metadata?, vector? (float32), expires_at?, named_vectors? ({name: float32})); ``expires_at`` is written
    from schema version 2 on, ``named_vectors`` from version 4 on."""
    cdef AvroWriter w
    cdef cnp.ndarray vec
    cdef dict hit
    aw_init(&w)
    try:
        aw_reserve(&w, 64)
        if len(results):
            aw_long(&w, len(results))
            for hits in results:
                if len(hits):
                    aw_long(&w, len(hits))
                    for hit in hits:
                        aw_str(&w, hit["id"])
                        aw_float(&w, hit["score"])
                        aw_float(&w, hit["distance"])
                        _w_metadata(&w, hit.get("metadata"))
                        v = hit.get("vector")
                        if v is None:
                            aw_long(&w, 0)
                        else:
                            vec = np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
                            aw_long(&w, 1)
                            _w_floats(&w, <const float *>cnp.PyArray_DATA(vec), vec.shape[0])
                        if schema_version >= 2:
                            x = hit.get("expires_at")
                            if x is None:
                                aw_long(&w, 0)
                            else:
                                aw_long(&w, 1)
                                aw_long(&w, x)
                        if schema_version >= 4:
                            _w_named(&w, hit.get("named_vectors"))
                aw_long(&w, 0)
        aw_long(&w, 0)
        return aw_bytes(&w)
    finally:
        aw_free(&w)


cdef object _bad(str what, Py_ssize_t offset):
    return MalformedPayloadError(f"search_result datum: {what} is malformed (at byte {offset})")


cdef object _r_vector(Cursor *c, AvroError *e):
    """array<float> as a float32 array: two passes (lengths, then floats), no Python float."""
    cdef Py_ssize_t start = c.pos
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t n = 0
    cdef Py_ssize_t block_start
    cdef cnp.ndarray out
    cdef float *dst
    while True:
        if avro_read_block(c, 4, &count, &size, "a vector block", e) < 0:
            return None
        if count == 0:
            break
        block_start = c.pos
        if cur_read(c, count * 4) == NULL or (size >= 0 and c.pos - block_start != size):
            return None
        n += count
    out = np.empty(n, dtype=np.float32)
    dst = <float *>cnp.PyArray_DATA(out)
    c.pos = start
    while True:
        avro_read_block(c, 4, &count, &size, "a vector block", e)
        if count == 0:
            return out
        pxd_copy_f32le(dst, cur_read(c, count * 4), count)
        dst += count


cdef float _r_float(Cursor *c) noexcept:
    cdef const unsigned char *p = cur_read(c, 4)
    cdef float f
    if p == NULL:
        return 0.0
    pxd_copy_f32le(&f, p, 1)
    return f


def decode_search_result(datum, int schema_version=1) -> list:
    """A SearchResult datum as lists of hit dicts (``metadata``/``vector``/``expires_at``/``named_vectors``
    only when present; vectors as float32 arrays); MalformedPayloadError for bytes that are not one."""
    cdef Py_buffer view
    cdef Cursor c
    cdef AvroError e
    cdef Py_ssize_t count
    cdef Py_ssize_t size
    cdef Py_ssize_t inner
    cdef Py_ssize_t inner_size
    cdef Py_ssize_t i
    cdef Py_ssize_t j
    cdef Py_ssize_t before
    cdef Py_ssize_t block_start
    cdef Py_ssize_t hits_start
    cdef int64_t branch
    cdef int64_t x
    cdef float score
    cdef float dist
    cdef list out = []
    cdef list hits
    cdef dict hit
    e.kind = AVRO_OK
    PyObject_GetBuffer(datum, &view, PyBUF_SIMPLE)
    try:
        cur_init(&c, <const unsigned char *>view.buf, view.len)
        while True:
            if avro_read_block(&c, 1, &count, &size, "the results block", &e) < 0:
                raise _bad("the results array", c.pos)
            if count == 0:
                break
            block_start = c.pos
            for i in range(count):
                hits = []
                while True:
                    if avro_read_block(&c, 10, &inner, &inner_size, "a hits block", &e) < 0:
                        raise _bad("a hits array", c.pos)
                    if inner == 0:
                        break
                    hits_start = c.pos
                    for j in range(inner):
                        before = c.pos
                        hit_id = avro_read_string(&c, "a hit id", &e)
                        if hit_id is None or c.end - c.pos < 8:
                            raise _bad("a hit id", before)
                        score = _r_float(&c)
                        dist = _r_float(&c)
                        hit = {"id": hit_id, "score": score, "distance": dist}
                        if avro_read_long(&c, &branch, "the metadata union index", &e) < 0 or branch not in (0, 1):
                            raise _bad("a hit's metadata", c.pos)
                        if branch == 1:
                            md = avro_read_metadata(&c, &e)
                            if md is None:
                                raise _bad("a hit's metadata", c.pos)
                            hit["metadata"] = md
                        if avro_read_long(&c, &branch, "the vector union index", &e) < 0 or branch not in (0, 1):
                            raise _bad("a hit's vector", c.pos)
                        if branch == 1:
                            vec = _r_vector(&c, &e)
                            if vec is None:
                                raise _bad("a hit's vector", c.pos)
                            hit["vector"] = vec
                        if schema_version >= 2:
                            if avro_read_long(&c, &branch, "the expires_at union index", &e) < 0 or branch not in (0, 1):
                                raise _bad("a hit's expires_at", c.pos)
                            if branch == 1:
                                if avro_read_long(&c, &x, "expires_at", &e) < 0:
                                    raise _bad("a hit's expires_at", c.pos)
                                hit["expires_at"] = x
                        if schema_version >= 4:
                            if avro_read_long(&c, &branch, "the named_vectors union index", &e) < 0 or branch not in (0, 1):
                                raise _bad("a hit's named_vectors", c.pos)
                            if branch == 1:
                                named = _r_named(&c, &e)
                                if named is None:
                                    raise _bad("a hit's named_vectors", c.pos)
                                hit["named_vectors"] = named
                        hits.append(hit)
                    if inner_size >= 0 and c.pos - hits_start != inner_size:
                        raise _bad("a hits block's byte size", hits_start)
                out.append(hits)
            if size >= 0 and c.pos - block_start != size:
                raise _bad("the results block's byte size", block_start)
        if c.pos != c.end:
            raise _bad("trailing bytes", c.pos)
        return out
    finally:
        PyBuffer_Release(&view)
