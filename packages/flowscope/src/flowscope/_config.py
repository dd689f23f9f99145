"""Every bound and timeout of a tracker, in one frozen object.

Each default cites its precedent, the way h11 justifies its limits.  All
times are nanoseconds of packet time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowscope._fragments import FragmentConfig

SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerConfig:
    """Bounds, timeouts and options of one :class:`~flowscope.FlowTracker`."""

    max_flows: int = 500_000
    """Flows held at once; beyond it the least recently used flow is written with
    ``end_reason`` ``evicted``.  ~1 KiB per flow keeps this under ~0.5 GiB (Suricata's
    default flow memcap is 128 MiB for 64k buckets; Zeek has no cap at all)."""
    tcp_idle_timeout_ns: int = 300 * SECOND
    """Zeek's ``tcp_inactivity_timeout`` (5 min)."""
    udp_idle_timeout_ns: int = 60 * SECOND
    """Zeek's ``udp_inactivity_timeout`` (1 min)."""
    other_idle_timeout_ns: int = 60 * SECOND
    """ICMP and other IP protocols: Zeek's ``icmp_inactivity_timeout`` (1 min)."""
    tcp_close_linger_ns: int = 5 * SECOND
    """After both FINs or a RST, late ACKs and retransmissions still join the flow for this
    long (Zeek's ``tcp_close_delay`` and ``tcp_reset_delay``, 5 s)."""
    active_timeout_ns: int = 1800 * SECOND
    """A flow longer than this is written and continued in a new record (NetFlow's and
    NFStream's 30 min default).  0 disables it."""
    vlan_in_key: bool = False
    """Whether VLAN ids join the flow key.  Off by default: the same 5-tuple seen on two
    VLANs is usually one conversation crossing a trunk, and the public truth keys flows
    without VLANs.  Turn it on where VLANs separate overlapping address spaces."""
    id_prefix: str = ""
    """Prefix of flow ids, so that several workers' ids never collide."""
    fragments: FragmentConfig = field(default_factory=FragmentConfig)
    """Bounds of IP fragment reassembly."""
