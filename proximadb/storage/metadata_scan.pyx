# cython: language_level=3, boundscheck=False, wraparound=False
"""A batch's encoded metadata maps read once, in compiled code: each row's size and its index entries.

An insert decoded with ``metadata_maps=True`` (codec/avro_batch.pyx) carries its rows' metadata as
the Avro maps of the payload, back to back: ``blob``, row r's map at ``offsets[r]:offsets[r + 1]``
(the encoding of the memtable and of ``meta.rows``: wal_io.encode_metadata_maps). Nothing makes a
dict per row: :func:`scan_maps` reads the maps once and returns

* ``sizes``: int64 per row, its size as ``validation.metadata_bytes`` counts it (UTF-8 bytes of keys
  and strings, +1 per list item, 8 per number or boolean), or -1 where the Python rule must decide:
  a key of 0 or more than ``max_key_bytes`` bytes, a non-finite double, or a key given twice in one
  map (a dict keeps the last value; the caller then takes the batch as decoded dicts,
  storage/insert_metadata.py);
* ``fields`` and ``strings``: the distinct keys and string values, numbered in order of appearance;
* ``entries``: what the payload index posts (payload_index.PayloadIndex.add_scanned), as columns
  ``(bounds, kind, code, row, number, big)``: per key of a row a ``KIND_KEY`` entry (the field
  exists), then its value's: ``KIND_STRING`` (``code``: the string's number; one per item of a
  list), ``KIND_NUMBER`` (``number``: a double, or a long of at most 2**53 in magnitude),
  ``KIND_BIG_INT`` (``big``: a long beyond that, which a double would round), ``KIND_TRUE``,
  ``KIND_FALSE`` or ``KIND_NULL``. They are ordered by field, then kind, then string code, rows
  ascending within each group; field f's entries are ``bounds[f]:bounds[f + 1]``.

:func:`gather_maps` copies maps from where they are held (a memtable's chunks, memtable_metadata.py; the
``meta.rows`` of merged segments, merge.py) back to back, in a given row order and in their canonical
encoding (a client may send any valid Avro encoding of a map; the memtable holds it as sent): what a
flush or a merge writes to ``meta.rows`` and ``meta.avro`` without decoding a row into a dict.

Every key and string is checked to be UTF-8 (a key repeating the one at the same place of the
previous row is compared by its bytes, which were checked then); one that is not raises
MalformedPayloadError, as the dict decoder does. A map that is not well formed raises it too.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

import numpy as np

from proximadb.codec._cursor cimport Cursor, cur_init, cur_read
from proximadb.codec._avro cimport (
    MIN_MAP_ENTRY_BYTES,
    MIN_STRING_BYTES,
    V_BOOLEAN,
    V_DOUBLE,
    V_LONG,
    V_NULL,
    V_STRING,
    V_STRING_ARRAY,
    AVRO_OK,
    AvroError,
    AvroWriter,
    avro_read_block,
    avro_read_boolean,
    avro_read_length,
    avro_read_long,
    avro_skip_metadata,
    aw_boolean,
    aw_bytes,
    aw_free,
    aw_init,
    aw_long,
    aw_raw,
)
from proximadb.errors import MalformedPayloadError

KIND_KEY = 0
KIND_STRING = 1
KIND_NUMBER = 2
KIND_BIG_INT = 3
KIND_TRUE = 4
KIND_FALSE = 5
KIND_NULL = 6

cdef int64_t EXACT = 9007199254740992  # 2**53  # as payload_index._EXACT: longs beyond it stay ints
cdef Py_ssize_t CACHED_KEYS = 64


cdef struct Entry:
    int32_t field
    int32_t code     # KIND_STRING: the string's number; else -1
    uint32_t row
    uint32_t kind
    double number    # KIND_NUMBER
    int64_t big      # KIND_BIG_INT


cdef struct Entries:
    Entry *e
    Py_ssize_t n
    Py_ssize_t cap


cdef int _push(Entries *out, int32_t field, uint32_t row, uint32_t kind) except -1:
    cdef Py_ssize_t cap
    cdef void *grown
    if out.n == out.cap:
        cap = out.cap * 2 if out.cap else 1024
        grown = PyMem_Realloc(out.e, cap * sizeof(Entry))
        if grown == NULL:
            raise MemoryError()
        out.e = <Entry *>grown
        out.cap = cap
    out.e[out.n].field = field
    out.e[out.n].code = -1
    out.e[out.n].row = row
    out.e[out.n].kind = kind
    out.e[out.n].number = 0.0
    out.e[out.n].big = 0
    out.n += 1
    return 0


cdef object _malformed(const AvroError *e, Py_ssize_t row):
    return MalformedPayloadError(
        f"malformed metadata map of record {row} at offset {e.offset}: {(<bytes>e.problem).decode('ascii')} "
        f"while reading {(<bytes>e.what).decode('ascii')}")


cdef const unsigned char *_read_run(Cursor *c, Py_ssize_t *n, const char *what, Py_ssize_t row) except NULL:
    """A length-prefixed run of bytes (a key or a string), read in place: its first byte, its length
    in n. avro_read_length refuses a length that runs past the map, so the run is always whole."""
    cdef AvroError e
    cdef const unsigned char *p
    if avro_read_length(c, n, what, &e) < 0:
        raise _malformed(&e, row)
    p = cur_read(c, n[0])
    if p == NULL:  # not reached: the length was checked against what is left
        raise MalformedPayloadError(f"malformed metadata map of record {row}: {(<bytes>what).decode()} is truncated")
    return p


cdef object _text(const unsigned char *p, Py_ssize_t n, str what, Py_ssize_t row):
    try:
        return PyUnicode_DecodeUTF8(<const char *>p, n, NULL)
    except UnicodeDecodeError:
        raise MalformedPayloadError(f"{what} of record {row} is not valid UTF-8") from None


cdef class _Scan:
    """The state of one scan: the numbering of keys and strings, the entries, the key cache."""

    cdef Entries out
    cdef dict field_of
    cdef list fields
    cdef dict code_of
    cdef list strings
    cdef int64_t *seen      # per field: the last row that had it (a key twice in one map)
    cdef Py_ssize_t seen_cap
    cdef const unsigned char *key_ptr[64]
    cdef Py_ssize_t key_len[64]
    cdef int32_t key_field[64]

    def __cinit__(self):
        self.field_of = {}
        self.fields = []
        self.code_of = {}
        self.strings = []
        self.seen = NULL
        self.seen_cap = 0
        self.out.e = NULL
        self.out.n = 0
        self.out.cap = 0
        for k in range(CACHED_KEYS):
            self.key_len[k] = -1

    def __dealloc__(self):
        PyMem_Free(self.out.e)
        PyMem_Free(self.seen)

    cdef int32_t field(self, const unsigned char *p, Py_ssize_t n, Py_ssize_t place, Py_ssize_t row) except -2:
        cdef int32_t f
        cdef void *grown
        if place < CACHED_KEYS and self.key_len[place] == n and memcmp(self.key_ptr[place], p, n) == 0:
            return self.key_field[place]
        key = _text(p, n, "a metadata key", row)
        found = self.field_of.get(key)
        if found is None:
            f = len(self.fields)
            self.field_of[key] = f
            self.fields.append(key)
            if f >= self.seen_cap:
                grown = PyMem_Realloc(self.seen, 2 * (f + 8) * sizeof(int64_t))
                if grown == NULL:
                    raise MemoryError()
                self.seen = <int64_t *>grown
                for k in range(self.seen_cap, 2 * (f + 8)):
                    self.seen[k] = -1
                self.seen_cap = 2 * (f + 8)
        else:
            f = <int32_t>found
        if place < CACHED_KEYS:
            self.key_ptr[place] = p
            self.key_len[place] = n
            self.key_field[place] = f
        return f

    cdef int string(self, int32_t f, uint32_t r, const unsigned char *p, Py_ssize_t n) except -1:
        """Row r's string value (or list element) p[:n] of field f: an entry with its string's code."""
        _push(&self.out, f, r, KIND_STRING)
        self.out.e[self.out.n - 1].code = self.code(p, n, r)
        return 0

    cdef int32_t code(self, const unsigned char *p, Py_ssize_t n, Py_ssize_t row) except -2:
        text = _text(p, n, "a metadata string", row)
        found = self.code_of.get(text)
        if found is not None:
            return <int32_t>found
        code = len(self.strings)
        self.code_of[text] = code
        self.strings.append(text)
        return code

    cdef int64_t row(self, const unsigned char *buf, Py_ssize_t n, uint32_t r, Py_ssize_t max_key_bytes) except -3:
        """Scan one map; its size, or -1 (see the module's documentation). A row left to the rule is still
        read to its end, so every string of the batch is checked and a malformed map raises either way."""
        cdef Cursor c
        cdef AvroError e
        cdef Py_ssize_t count, size, j, klen, slen, items, place = 0
        cdef int64_t total = 0
        cdef bint defer = False
        cdef int64_t branch, v
        cdef int flag
        cdef double d
        cdef uint64_t bits
        cdef int32_t f
        cdef const unsigned char *p
        cur_init(&c, buf, n)
        e.kind = 0
        while True:
            if avro_read_block(&c, MIN_MAP_ENTRY_BYTES, &count, &size, "the metadata map block", &e) < 0:
                raise _malformed(&e, r)
            if count == 0:
                break
            for j in range(count):
                p = _read_run(&c, &klen, "a metadata key", r)
                if klen < 1 or klen > max_key_bytes:
                    defer = True
                f = self.field(p, klen, place, r)
                place += 1
                if self.seen[f] == r:
                    defer = True  # a key twice in one map: the decoded dict keeps the last value
                self.seen[f] = r
                total += klen
                _push(&self.out, f, r, KIND_KEY)
                if avro_read_long(&c, &branch, "a metadata value's union index", &e) < 0:
                    raise _malformed(&e, r)
                if branch == V_NULL:
                    _push(&self.out, f, r, KIND_NULL)
                elif branch == V_BOOLEAN:
                    if avro_read_boolean(&c, &flag, "a metadata boolean", &e) < 0:
                        raise _malformed(&e, r)
                    _push(&self.out, f, r, KIND_TRUE if flag else KIND_FALSE)
                    total += 8
                elif branch == V_LONG:
                    if avro_read_long(&c, &v, "a metadata long", &e) < 0:
                        raise _malformed(&e, r)
                    if -EXACT <= v <= EXACT:
                        _push(&self.out, f, r, KIND_NUMBER)
                        self.out.e[self.out.n - 1].number = <double>v
                    else:
                        _push(&self.out, f, r, KIND_BIG_INT)
                        self.out.e[self.out.n - 1].big = v
                    total += 8
                elif branch == V_DOUBLE:
                    p = cur_read(&c, 8)
                    if p == NULL:
                        raise MalformedPayloadError(f"malformed metadata map of record {r}: a metadata double "
                                                    "is truncated")
                    bits = (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16) | (<uint64_t>p[3] << 24)
                            | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40) | (<uint64_t>p[6] << 48)
                            | (<uint64_t>p[7] << 56))
                    memcpy(&d, &bits, 8)
                    if not isfinite(d):
                        defer = True
                    _push(&self.out, f, r, KIND_NUMBER)
                    self.out.e[self.out.n - 1].number = d
                    total += 8
                elif branch == V_STRING:
                    p = _read_run(&c, &slen, "a metadata string", r)
                    self.string(f, r, p, slen)
                    total += slen
                elif branch == V_STRING_ARRAY:
                    while True:
                        if avro_read_block(&c, MIN_STRING_BYTES, &items, &size, "a metadata string array block",
                                           &e) < 0:
                            raise _malformed(&e, r)
                        if items == 0:
                            break
                        for _ in range(items):
                            p = _read_run(&c, &slen, "a metadata string array item", r)
                            self.string(f, r, p, slen)
                            total += slen + 1
                else:
                    raise MalformedPayloadError(f"malformed metadata map of record {r}: union index {branch} "
                                                "(must be 0..5)")
        return -1 if defer else total


cdef object _grouped(const Entries *out, Py_ssize_t fields, Py_ssize_t strings):
    """The entries as columns, ordered by (field, kind, string code), rows ascending within each group
    (three stable counting sorts: code, then kind, then field); and each field's start in them."""
    cdef Py_ssize_t n = out.n
    cdef Py_ssize_t i, k, pass_, buckets
    cdef Py_ssize_t *count
    cdef Py_ssize_t *a
    cdef Py_ssize_t *b
    cdef Py_ssize_t *t
    cdef Py_ssize_t key
    cdef const Entry *x
    bounds = np.zeros(fields + 1, dtype=np.int64)
    kind = np.empty(n, dtype=np.uint8)
    code = np.empty(n, dtype=np.int32)
    row = np.empty(n, dtype=np.uint32)
    number = np.empty(n, dtype=np.float64)
    big = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] bo = bounds
    cdef unsigned char[::1] ki = kind
    cdef int32_t[::1] co = code
    cdef uint32_t[::1] ro = row
    cdef double[::1] nu = number
    cdef int64_t[::1] bi = big
    buckets = max(strings + 1, fields, 8)
    count = <Py_ssize_t *>PyMem_Malloc((buckets + 1 + 2 * (n if n else 1)) * sizeof(Py_ssize_t))
    if count == NULL:
        raise MemoryError()
    try:
        a = count + buckets + 1
        b = a + (n if n else 1)
        for i in range(n):
            a[i] = i
        for pass_ in range(3):  # least significant key first: code, kind, field
            for k in range(buckets + 1):
                count[k] = 0
            for i in range(n):
                x = &out.e[a[i]]
                key = x.code + 1 if pass_ == 0 else x.kind if pass_ == 1 else x.field
                count[key + 1] += 1
            for k in range(buckets):
                count[k + 1] += count[k]
            for i in range(n):
                x = &out.e[a[i]]
                key = x.code + 1 if pass_ == 0 else x.kind if pass_ == 1 else x.field
                b[count[key]] = a[i]
                count[key] += 1
            t = a
            a = b
            b = t
        for i in range(n):
            x = &out.e[a[i]]
            ki[i] = <unsigned char>x.kind
            co[i] = x.code
            ro[i] = x.row
            nu[i] = x.number
            bi[i] = x.big
            bo[x.field + 1] += 1
        for k in range(fields):
            bo[k + 1] += bo[k]
    finally:
        PyMem_Free(count)
    return bounds, kind, code, row, number, big


def scan_maps(const unsigned char[::1] blob not None, const uint64_t[::1] offsets not None,
              Py_ssize_t max_key_bytes):
    """``(sizes, fields, strings, entries)`` of the maps ``blob[offsets[r]:offsets[r + 1]]`` (see above)."""
    cdef Py_ssize_t rows = offsets.shape[0] - 1
    cdef Py_ssize_t r
    cdef uint64_t start, end
    cdef _Scan scan = _Scan()
    if rows < 0:
        raise ValueError("offsets needs at least one entry")
    if rows >= 4294967295:
        raise ValueError(f"{rows} rows is past the scan's 32-bit row numbers")
    sizes = np.zeros(rows, dtype=np.int64)
    cdef int64_t[::1] sz = sizes
    for r in range(rows):
        start = offsets[r]
        end = offsets[r + 1]
        if start > end or end > <uint64_t>blob.shape[0]:
            raise ValueError(f"row {r}'s map at {start}:{end} is outside the {blob.shape[0]} bytes")
        if start == end:
            raise MalformedPayloadError(f"malformed metadata map of record {r}: no bytes")
        sz[r] = scan.row(&blob[0] + start, <Py_ssize_t>(end - start), <uint32_t>r, max_key_bytes)
    return sizes, scan.fields, scan.strings, _grouped(&scan.out, len(scan.fields), len(scan.strings))


cdef int _copy_string(Cursor *c, AvroWriter *out, const char *what, AvroError *e) except -2:
    cdef Py_ssize_t n
    if avro_read_length(c, &n, what, e) < 0:
        return -1
    aw_long(out, n)
    aw_raw(out, c.buf + c.pos, n)
    c.pos += n
    return 0


cdef int _copy_items(Cursor *c, AvroWriter *out, AvroWriter *scratch, bint is_map, AvroError *e) except -2:
    """A map or string array in its canonical encoding: one block of every item, then 0 (nothing but
    the 0 when empty), longs as the shortest varints: what wal_io.encode_metadata_maps writes for the
    decoded value, whatever valid encoding the client sent (blocks with byte sizes, several blocks,
    padded varints). The items go to ``scratch`` (``scratch[1]`` for a map's string arrays) until their
    count is known. The map was checked whole first (avro_skip_metadata): reads here cannot fail."""
    cdef Py_ssize_t total = 0, count, size, k, mark = scratch[0].len
    cdef int64_t branch, v
    cdef int flag
    while True:
        avro_read_block(c, MIN_MAP_ENTRY_BYTES if is_map else MIN_STRING_BYTES, &count, &size, "a block", e)
        if count == 0:
            break
        total += count
        for k in range(count):
            _copy_string(c, &scratch[0], "a metadata key or string", e)
            if not is_map:
                continue
            avro_read_long(c, &branch, "a metadata value's union index", e)
            aw_long(&scratch[0], branch)
            if branch == V_BOOLEAN:
                avro_read_boolean(c, &flag, "a metadata boolean", e)
                aw_boolean(&scratch[0], flag)
            elif branch == V_LONG:
                avro_read_long(c, &v, "a metadata long", e)
                aw_long(&scratch[0], v)
            elif branch == V_DOUBLE:
                aw_raw(&scratch[0], c.buf + c.pos, 8)
                c.pos += 8
            elif branch == V_STRING:
                _copy_string(c, &scratch[0], "a metadata string", e)
            elif branch == V_STRING_ARRAY:
                _copy_items(c, &scratch[0], &scratch[1], False, e)
    if total:
        aw_long(out, total)
        aw_raw(out, scratch[0].buf + mark, scratch[0].len - mark)
    scratch[0].len = mark
    aw_long(out, 0)
    return 0


def gather_maps(list chunks not None, const uint64_t[::1] where not None, int offset_bits):
    """``(blob, offsets)``: the maps at ``where`` (per row: chunk number << ``offset_bits`` | the map's
    offset in that chunk, any buffer: a memtable's ``bytes`` as memtable_metadata.py packs them, or a
    segment's mapped ``meta.rows`` blob), back to back in their canonical encoding (:func:`_copy_items`:
    the bytes a decode and encode_metadata_maps would give), row r's at ``offsets[r]:offsets[r + 1]``.
    Each map is checked first (MalformedPayloadError). A chunk's buffer is taken when a row first needs it."""
    cdef Py_ssize_t rows = where.shape[0]
    cdef Py_ssize_t r, k, nchunks = len(chunks)
    cdef uint64_t mask = (<uint64_t>1 << offset_bits) - 1
    cdef uint64_t w, chunk
    cdef Py_ssize_t start
    cdef Cursor c
    cdef AvroError e
    cdef AvroWriter out
    cdef AvroWriter scratch[2]
    cdef Py_buffer *views = <Py_buffer *>PyMem_Malloc(max(nchunks, 1) * sizeof(Py_buffer))
    cdef char *taken = <char *>PyMem_Malloc(max(nchunks, 1))
    if views == NULL or taken == NULL:
        PyMem_Free(views)
        PyMem_Free(taken)
        raise MemoryError()
    memset(taken, 0, max(nchunks, 1))
    offsets = np.empty(rows + 1, dtype=np.uint64)
    cdef uint64_t[::1] off = offsets
    aw_init(&out)
    aw_init(&scratch[0])
    aw_init(&scratch[1])
    try:
        for r in range(rows):
            w = where[r]
            chunk = w >> offset_bits
            if chunk >= <uint64_t>nchunks:
                raise ValueError(f"row {r}: chunk {chunk} of {nchunks}")
            if not taken[chunk]:
                PyObject_GetBuffer(chunks[chunk], &views[chunk], PyBUF_SIMPLE)
                taken[chunk] = 1
            start = <Py_ssize_t>(w & mask)
            if start >= views[chunk].len:
                raise ValueError(f"row {r}: offset {start} past chunk {chunk}'s {views[chunk].len} bytes")
            cur_init(&c, <const unsigned char *>views[chunk].buf, views[chunk].len)
            c.pos = start
            e.kind = AVRO_OK
            if avro_skip_metadata(&c, &e) < 0:  # checked whole before anything is copied
                raise _malformed(&e, r)
            off[r] = <uint64_t>out.len
            c.pos = start
            _copy_items(&c, &out, scratch, True, &e)
        off[rows] = <uint64_t>out.len
        return aw_bytes(&out), offsets
    finally:
        aw_free(&out)
        aw_free(&scratch[0])
        aw_free(&scratch[1])
        for k in range(nchunks):
            if taken[k]:
                PyBuffer_Release(&views[k])
        PyMem_Free(views)
        PyMem_Free(taken)
