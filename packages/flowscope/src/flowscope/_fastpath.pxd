# Static types for compiling _fastpath.py with Cython (an augmenting .pxd: the .py
# file stays the one source of the loop, and runs unchanged where nothing compiled
# it).  Offsets, lengths, header fields and the clock become C integers, and flows
# are the C struct of _tracker.pxd; keys, events and the tracker stay Python
# objects, so the compiled loop does exactly what the interpreted one does.  Every
# integer typed here fits its C type: offsets are bounded by the buffer, header
# fields by their width, times by 2**63 ns.
import cython
from flowscope._tracker cimport Flow

@cython.locals(
    eth=bint, vlan_key=bint, general=bint, fwd=bint,
    table=dict, st=list, vl=tuple, src=bytes, dst=bytes,
    end=Py_ssize_t, rec=Py_ssize_t, nxt=Py_ssize_t, p=Py_ssize_t, lim=Py_ssize_t,
    ip_end=Py_ssize_t, l4=Py_ssize_t, plen6=Py_ssize_t,
    cap_end=Py_ssize_t, poff=Py_ssize_t, plen=Py_ssize_t, pend=Py_ssize_t, ulen=Py_ssize_t,
    need=Py_ssize_t, npk=Py_ssize_t, nby=cython.longlong, caplen=cython.longlong, wire_len=cython.longlong,
    sec=cython.longlong, frac=cython.longlong, last_sec=cython.longlong, sec_ns=cython.longlong,
    ts=cython.longlong, now=cython.longlong, next_tick=cython.longlong,
    seq=cython.longlong, ack=cython.longlong, e=cython.longlong, n=cython.longlong,
    et=int, proto=int, flags=int, doff=int, win=int, dirn=int, sport=int, dport=int,
    bits=int, hb=int, f=Flow, found=Flow,
)
cpdef tuple scan(object tracker, bytes buf, Py_ssize_t pos, Py_ssize_t count, object header,
                 long long frac_ns, int link, Py_ssize_t maxcap)
