"""``flow-summary``: one record per flow (and per L7 transaction) from capture files."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, List, Optional, Sequence, TextIO, Tuple

from flowscope import (
    CsvSink,
    FilterSyntaxError,
    FlowTracker,
    JsonLinesSink,
    PacketFilter,
    TrackerConfig,
    compile_filter,
)
from flowscope_core import FlowEvent, MissingExtraError

from flowscope_cli._common import (
    Exit,
    Housekeeper,
    Progress,
    capture_paths,
    error,
    feed_captures,
    open_output,
    open_reported,
    quiet_broken_pipe,
    version_text,
)
from flowscope_cli._report import Report

PROG = "flow-summary"

DESCRIPTION = """\
Summarise the flows in packet captures (pcap or pcapng, any of their link
types; gzip-compressed files too).  Every TCP/UDP/ICMP conversation becomes
one flow record with packet, byte and payload counts per direction, Zeek's
history and conn_state, and the application protocol; HTTP, TLS and DNS
transactions become records of their own.
"""

EPILOG = """\
formats:
  table   a readable report: totals, protocols, services, top talkers, the
          largest flows, HTTP hosts, TLS names, JA4s, DNS names (default)
  jsonl   one JSON object per line (flow, http, tls, dns… records; the field
          contract is docs/events.md)
  csv     flow records only, with a header row

exit status:
  0  success
  1  a capture was truncated or corrupt (records before the damage were written)
  2  bad arguments
  3  an input could not be read or is not a capture
  4  a protocol's optional dependency is missing (the message names the pip install)
  130 interrupted (Ctrl-C); finished records were written

examples:
  flow-summary --demo
  flow-summary capture.pcapng --format jsonl | jq 'select(.event_type=="tls") | .server_name'
  flow-summary day1.pcap day2.pcap --format csv -o flows.csv
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used by the docs test)."""
    p = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=version_text(PROG))
    p.add_argument("captures", nargs="*", metavar="CAPTURE", help="pcap/pcapng files, read in order as one stream; none: the demo")
    p.add_argument("-f", "--format", choices=("table", "jsonl", "csv"), default="table", help="output format (default: table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--demo", action="store_true", help="read the small capture packaged with flowscope-cli (before any CAPTURE given)")
    p.add_argument("-F", "--filter", metavar="EXPR", help="track only packets matching this pcap-filter expression, e.g. 'tcp port 443 and not host 10.0.0.1' (applied to the innermost packet, after decapsulation)")
    p.add_argument("--keylog", metavar="FILE", help="TLS secrets in NSS key log format (SSLKEYLOGFILE) to decrypt QUIC handshakes and show their certificates; pcapng decryption-secrets blocks are used too")
    p.add_argument("--flows-only", action="store_true", help="flow records only: skip reassembly and HTTP/TLS/DNS parsing (fastest)")
    p.add_argument("--vlan-in-key", action="store_true", help="keep flows on different VLANs apart")
    p.add_argument("--max-flows", type=int, default=TrackerConfig().max_flows, metavar="N", help="flow table capacity; least recently used flows are written when full (default: %(default)s)")
    p.add_argument("-w", "--workers", default="1", metavar="N", help="worker processes, each owning a share of the flows (a number, or 'auto' for one per CPU, at most 8; default: 1)")
    p.add_argument("--stats", action="store_true", help="print the tracker's counters to standard error at the end")
    p.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress line on standard error")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    return p


def _sink(fmt: str, out: TextIO, report: Optional[Report]) -> Callable[[FlowEvent], None]:
    if fmt == "jsonl":
        return JsonLinesSink(out).write
    if fmt == "csv":
        return CsvSink(out).write
    assert report is not None
    return report.add


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.max_flows < 1:
        error(PROG, "--max-flows must be at least 1")
        return Exit.USAGE
    captures: List[str] = list(capture_paths(args.captures, args.demo))
    try:
        workers = min(os.cpu_count() or 1, 8) if args.workers == "auto" else int(args.workers)
        if workers < 1:
            raise ValueError
    except ValueError:
        error(PROG, f"--workers takes a positive number or 'auto', not {args.workers!r}")
        return Exit.USAGE
    packet_filter = None
    if args.filter is not None:
        try:
            packet_filter = compile_filter(args.filter)
        except FilterSyntaxError as e:
            error(PROG, f"--filter: {e}")
            return Exit.USAGE
    l7 = None
    if not args.flows_only:
        from flowscope import default_engine

        l7 = default_engine()
        for problem in l7.load_errors:  # a broken plugin is reported, the others keep working
            sys.stderr.write(f"{PROG}: warning: {problem}\n")
        if args.keylog is not None:
            try:
                l7.keylog.add_file(args.keylog)
            except OSError as e:
                error(PROG, f"--keylog {args.keylog}: {e.strerror or e}")
                return Exit.UNREADABLE
    if workers > 1:
        return _run_workers(args, captures, workers, packet_filter)
    config = TrackerConfig(max_flows=args.max_flows, vlan_in_key=args.vlan_in_key)
    tracker = FlowTracker(config, l7=l7, packet_filter=packet_filter)
    try:
        out = open_output(args.output)
    except OSError as e:
        error(PROG, f"cannot write {args.output}: {e.strerror}")
        return Exit.UNREADABLE
    report = Report() if args.format == "table" else None
    write = _sink(args.format, out, report)
    progress = Progress(args.progress)
    keeper = Housekeeper(progress).__enter__()
    try:
        try:
            status = feed_captures(PROG, captures, tracker, write, keeper, written="flows seen so far were written")
        except MissingExtraError as e:
            progress.done()
            error(PROG, str(e))
            return Exit.MISSING_EXTRA
        keeper.__exit__(None, None, None)  # no progress redraw may land inside the report
        if report is not None and keeper.watched:  # no report of nothing when no input could be read
            report.render(out, tracker.stats.as_dict())
        if args.stats:
            sys.stderr.write(" ".join(f"{k}={v}" for k, v in tracker.stats.as_dict().items()) + "\n")
        out.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
        return Exit.OK
    finally:
        keeper.__exit__(None, None, None)
        if out is not sys.stdout:
            out.close()
    return status


class _Position:
    """The reader-like position a worker reports, for the progress line."""

    def __init__(self) -> None:
        self.offset = 0
        self.size: Optional[int] = None


def _opened(captures: Sequence[str]) -> Tuple[List[str], int]:
    """The captures that open as captures (each failure reported once), and the exit status so far."""
    good: List[str] = []
    status = Exit.OK
    for path in captures:
        reader, failed = open_reported(PROG, path)
        if reader is None:
            status = max(status, failed)
        else:
            reader.close()
            good.append(path)
    return good, status


def _run_workers(args: argparse.Namespace, captures: List[str], workers: int, packet_filter: Optional[PacketFilter]) -> int:
    from flowscope_cli._workers import run_workers

    good, status = _opened(captures)
    config = TrackerConfig(max_flows=args.max_flows, vlan_in_key=args.vlan_in_key)
    try:
        out = open_output(args.output)
    except OSError as e:
        error(PROG, f"cannot write {args.output}: {e.strerror}")
        return Exit.UNREADABLE
    report = Report() if args.format == "table" else None
    progress = Progress(args.progress)
    position = _Position()

    def on_progress(path: str, offset: int, size: Optional[int], packets: int, flows: int) -> None:
        position.offset, position.size = offset, size
        progress.update(path, position, packets, flows)  # type: ignore[arg-type]

    try:
        if args.format == "csv":
            CsvSink(out)  # the header row; workers send rows only
        result = run_workers(
            good, workers, config, args.flows_only, args.format, packet_filter, args.keylog, out.write,
            report.add if report is not None else (lambda ev: None), on_progress,
        )  # fmt: skip
        progress.done()
        for path, offset, reason, packets in result.damaged:
            error(PROG, f"{path}: capture damaged at byte offset {offset}: {reason}; "
                  f"the {packets:,} packets before it were used")  # fmt: skip
            status = max(status, Exit.DAMAGED)
        if result.missing_extra is not None:
            error(PROG, result.missing_extra)
            return Exit.MISSING_EXTRA
        if result.interrupted:
            error(PROG, "interrupted; flows seen so far were written")
            status = Exit.INTERRUPTED
        if report is not None:
            report.render(out, result.stats)
        if args.stats:
            sys.stderr.write(" ".join(f"{k}={v}" for k, v in result.stats.items()) + "\n")
        out.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
        return Exit.OK
    finally:
        if out is not sys.stdout:
            out.close()
    return status


def main() -> None:
    """Console-script entry point."""
    sys.exit(int(run()))


if __name__ == "__main__":
    main()
