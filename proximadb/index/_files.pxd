# Index-file helpers shared by HNSWIndex and IVFIndex (inline, so each module compiles its own copy):
# a numpy view over index memory for one save/load call, and CRC32C over an array's bytes.
cimport numpy as cnp
from libc.stdint cimport uint32_t

from crc32c cimport pxd_crc32c


cdef inline cnp.ndarray view_array(void *ptr, cnp.npy_intp count, int typenum):
    """A numpy array over index memory, for one save/load call (it does not own it)."""
    return cnp.PyArray_SimpleNewFromData(1, &count, typenum, ptr)


cdef inline uint32_t crc_array(uint32_t crc, cnp.ndarray arr) except? 0xFFFFFFFF:
    cdef const char *p = <const char *>cnp.PyArray_DATA(arr)
    cdef size_t nbytes = arr.nbytes
    with nogil:
        crc = pxd_crc32c(crc, p, nbytes)
    return crc
