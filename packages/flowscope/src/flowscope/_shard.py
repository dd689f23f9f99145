"""Symmetric flow hashing for sharding flows across workers.

Both directions of a flow must land on the same worker, so the hash is taken
over the direction-agnostic key the tracker already builds: ``(proto, low
address, low port, high address, high port)``.  xxHash (XXH3) is fast and
well distributed, and unlike Python's ``hash()`` it is the same in every
process, whatever ``PYTHONHASHSEED`` says.
"""

from __future__ import annotations

import struct
from typing import Hashable

import xxhash

_PACK = struct.Struct("!BHH").pack
_xxh3 = xxhash.xxh3_64_intdigest


def flow_hash(key: Hashable) -> int:
    """A 64-bit hash of a flow key, equal in every process.

    Keys of the default extractor (``(proto, lo_addr, lo_port, hi_addr,
    hi_port)``, optionally wrapped with VLAN ids) are hashed from their raw
    fields; any other key from its ``repr``.
    """
    k = key
    if type(k) is tuple and len(k) == 2 and type(k[0]) is tuple:  # (five-tuple, vlans)
        k = k[0]
    if type(k) is tuple and len(k) == 5:
        proto, a, ap, b, bp = k
        if type(a) is bytes and type(b) is bytes and type(proto) is int and type(ap) is int and type(bp) is int:
            return _xxh3(a + b + _PACK(proto, ap, bp))
    return _xxh3(repr(key).encode())


def shard_of(key: Hashable, workers: int) -> int:
    """Which of ``workers`` workers owns the flow with this key."""
    return flow_hash(key) % workers
