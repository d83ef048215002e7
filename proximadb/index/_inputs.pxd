# Input preparation shared by HNSWIndex and IVFIndex (inline, so each module compiles its own
# copy): vector matrices, single queries, and a filter turned into (bitmap over rows, allowed live
# rows). Each index keeps its own policy for choosing the exact scan over the graph / lists.
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t

from proximadb.index._ann cimport pxa_idmap, pxa_idmap_get


cdef inline cnp.ndarray as_matrix(object vectors, Py_ssize_t dim, str what):
    """(n, dim) float32 C-contiguous; one vector of dim is taken as a 1-row matrix."""
    import numpy as np
    cdef cnp.ndarray arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim == 1 and arr.shape[0] == dim:
        arr = arr.reshape(1, dim)
    if arr.ndim != 2 or arr.shape[1] != dim:
        from proximadb.errors import DimensionMismatchError
        raise DimensionMismatchError(f"{what} must have shape (n, {dim}), got {tuple(np.shape(vectors))}")
    return arr


cdef inline cnp.ndarray as_query(object query, Py_ssize_t dim):
    """A float32 C-contiguous query of dim components, without a copy when it already is one."""
    cdef cnp.ndarray arr
    if (type(query) is cnp.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>query) == cnp.NPY_FLOAT32
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>query)):
        arr = <cnp.ndarray>query
    else:
        import numpy as np
        arr = np.ascontiguousarray(query, dtype=np.float32)
    if cnp.PyArray_SIZE(arr) != dim or (arr.ndim != 1 and not (arr.ndim == 2 and arr.shape[0] == 1)):
        import numpy as np
        from proximadb.errors import DimensionMismatchError
        raise DimensionMismatchError(f"query must have {dim} components, got shape {np.shape(query)}")
    return arr


cdef inline tuple allowed_rows(object filter_ids, bint exact_forced, int64_t n, const uint8_t *deleted,
                               const pxa_idmap *idmap):
    """(bitmap uint8 over rows, allowed live rows int32) for a filter, or (None, None) when there is
    no filter and no forced exact scan. filter_ids: a uint8/bool bitmap over the n rows, or ids."""
    import numpy as np
    cdef int64_t i, m, cnt = 0
    cdef int32_t r
    cdef cnp.ndarray bitmap, rows, ids_arr
    cdef uint8_t *bm
    cdef int32_t *rp
    cdef const int64_t *ip
    if filter_ids is None:
        if not exact_forced:
            return None, None
        bitmap = np.ones(n, dtype=np.uint8)
    elif (isinstance(filter_ids, np.ndarray) and filter_ids.dtype in (np.uint8, np.bool_)
            and filter_ids.ndim == 1 and filter_ids.shape[0] == n):
        bitmap = np.ascontiguousarray(filter_ids).view(np.uint8)
    else:
        ids_arr = np.ascontiguousarray(filter_ids, dtype=np.int64).reshape(-1)
        bitmap = np.zeros(n, dtype=np.uint8)
        bm = <uint8_t *>cnp.PyArray_DATA(bitmap)
        ip = <const int64_t *>cnp.PyArray_DATA(ids_arr)
        m = ids_arr.shape[0]
        for i in range(m):
            r = pxa_idmap_get(idmap, ip[i])
            if r >= 0:
                bm[r] = 1
    bm = <uint8_t *>cnp.PyArray_DATA(bitmap)
    rows = np.empty(n, dtype=np.int32)
    rp = <int32_t *>cnp.PyArray_DATA(rows)
    for i in range(n):
        if bm[i] and not deleted[i]:
            rp[cnt] = <int32_t>i
            cnt += 1
    return bitmap, rows[:cnt]
