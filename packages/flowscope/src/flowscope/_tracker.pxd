cdef class Flow:
    cdef public object key, fid, a_addr, b_addr, hist, st, anom, basis, vlans, tunnels, info, l7, service
    cdef public int proto, a_port, b_port, hbits
    cdef public bint fwd, flip, dead
    cdef public long long pk0, pk1, by0, by1, pl0, pl1, first_ts, last_ts, closed_ts, timer, missed, touched
