"""Regenerate the tshark "Follow TCP stream" expectations in this folder.

Run once, from the repository root, with tshark installed
(``apt-get install -y tshark``)::

    python tests/data/reassembly/make_expected.py ../shared/corpus/pcaps

For every TCP stream ``N`` of each capture it runs
``tshark -r CAPTURE -q -z follow,tcp,raw,N`` and keeps a digest of the output
rather than the bytes themselves, so the files stay small:
``CAPTURE_STEM.follow.json``.  See README.md for the format.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

CAPTURES = (
    "zeek_tcp_reassembly.pcap",
    "suri_tcp-overlap.pcap",
    "zeek_pppoe-over-qinq.pcap",
    "ndpi_tumblr.pcap",
)

MISSING = re.compile(rb"\[(\d+) bytes? missing in capture file\]\x00?")
"""What tshark's follow writes where the capture lacks bytes (NUL-terminated)."""


def tshark(*arguments: str) -> str:
    """Run tshark and return its standard output."""
    done = subprocess.run(["tshark", *arguments], capture_output=True, text=True, check=True)
    return done.stdout


def stream_ids(capture: Path) -> List[int]:
    """Every ``tcp.stream`` index in the capture."""
    out = tshark("-r", str(capture), "-Y", "tcp", "-T", "fields", "-e", "tcp.stream")
    return sorted({int(x) for x in out.split()})


def follow(capture: Path, index: int) -> Dict[str, Any]:
    """One stream's follow output as nodes and, per node, runs of contiguous bytes."""
    text = tshark("-r", str(capture), "-q", "-z", f"follow,tcp,raw,{index}")
    nodes = ["", ""]
    chunks: List[List[bytes]] = [[], []]
    started = False
    for line in text.splitlines():
        if line.startswith("Node 0: "):
            nodes[0] = line[8:].strip()
        elif line.startswith("Node 1: "):
            nodes[1] = line[8:].strip()
            started = True
        elif started and line.strip() and not line.startswith("="):
            chunks[1 if line.startswith("\t") else 0].append(bytes.fromhex(line.strip()))
    sides = []
    for side_chunks in chunks:
        runs: List[List[Any]] = []
        gap = 0
        current = bytearray()
        for chunk in side_chunks:
            marker = MISSING.fullmatch(chunk)
            if marker is None:
                current += chunk
                continue
            if current:
                runs.append([gap, len(current), hashlib.sha256(current).hexdigest()])
                current = bytearray()
                gap = 0
            gap += int(marker.group(1))
        if current:
            runs.append([gap, len(current), hashlib.sha256(current).hexdigest()])
            gap = 0
        sides.append({"runs": runs, "trailing_gap": gap})
    return {"stream": index, "nodes": nodes, "sides": sides}


def main(corpus: Path) -> None:
    here = Path(__file__).resolve().parent
    version = tshark("--version").splitlines()[0].strip()
    for name in CAPTURES:
        capture = corpus / name
        result = {
            "capture": name,
            "sha256": hashlib.sha256(capture.read_bytes()).hexdigest(),
            "tshark": version,
            "command": f"tshark -r {name} -q -z follow,tcp,raw,N",
            "streams": [follow(capture, i) for i in stream_ids(capture)],
        }
        out = here / (capture.stem + ".follow.json")
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(out, len(result["streams"]), "streams")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
