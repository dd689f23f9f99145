# Static types for compiling _tracker.py with Cython (an augmenting .pxd: the .py
# file stays the one source and runs unchanged where nothing compiled it).
#
# Compiled, a flow's state is a C struct: the fused loop (_fastpath.pxd cimports
# this layout) and the tracker's methods update counters, times and flags as C
# fields instead of boxed Python integers.  Every field stays readable and
# writable from Python (``public``) with the same names as the ``__slots__`` of
# the interpreted class; the integer fields fit their C types (ports and flags
# by their width, counters and nanosecond times below 2**63).
cdef class Flow:
    cdef public object key, fid, a_addr, b_addr, hist, st, anom, basis, vlans, tunnels, info, l7, service
    cdef public int proto, a_port, b_port, hbits
    cdef public bint fwd, flip, dead
    cdef public long long pk0, pk1, by0, by1, pl0, pl1, first_ts, last_ts, closed_ts, timer, missed, touched
