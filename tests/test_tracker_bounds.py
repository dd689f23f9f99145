"""Nothing in the tracker grows without bound: a flood of new flows past ``max_flows``."""

from __future__ import annotations

from flowscope import EndReason, FlowEnded, FlowTracker, TrackerConfig
from packets import UDP, ether, ip, ipv4, udp

SECOND = 1_000_000_000


def test_flow_flood_keeps_table_and_timers_bounded() -> None:
    cap = 100
    tracker = FlowTracker(TrackerConfig(max_flows=cap))
    src, dst = ip("10.0.0.1"), ip("10.0.0.2")
    evicted = 0
    worst_timers = 0
    for i in range(60_000):
        frame = ether(0x0800, ipv4(src, dst, UDP, udp(1024 + i % 60_000, 53, b"x")))
        ts = 1_700_000_000 * SECOND + i * 1_000_000  # 1000 new flows per second of packet time
        for ev in tracker.feed(ts, frame):
            if isinstance(ev, FlowEnded) and ev.end_reason is EndReason.EVICTED:
                evicted += 1
        assert tracker.active_flows <= cap
        if i % 1000 == 0:
            worst_timers = max(worst_timers, tracker.timer_entries)
    # Evicted flows are written, and the timer wheel does not keep them: its entries stay
    # within a small multiple of the table, not the 60,000 flows seen.
    assert evicted > 50_000
    assert worst_timers <= 2 * cap + 4096 + 1000
    assert tracker.stats.evicted == evicted
