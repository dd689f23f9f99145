"""``flow-summary --keylog FILE``: an SSLKEYLOGFILE shows QUIC server certificates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from conftest import load_truth
from flowscope import open_capture
from packets import pcap_bytes

CLI = Path(sys.executable).parent / "flow-summary"


def _quic_records(argv: List[str]) -> List[Dict[str, Any]]:
    res = subprocess.run([str(CLI), "--format", "jsonl", *argv], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return [r for r in map(json.loads, res.stdout.splitlines()) if r["event_type"] == "quic"]


def test_keylog_file_decrypts_the_quic_handshake(corpus_dir: Path, tmp_path: Path) -> None:
    src = corpus_dir / "ndpi_quic-v2.pcapng"
    secrets: List[bytes] = []
    reader = open_capture(src)
    reader.on_secrets = lambda kind, data: secrets.append(data)
    records = list(reader)
    assert secrets, "the corpus capture embeds its TLS secrets in a decryption-secrets block"
    # The same packets without the embedded secrets, and the secrets as a separate file.
    bare = tmp_path / "quic-v2.pcap"
    bare.write_bytes(pcap_bytes([(ts, frame) for ts, frame, _wl, _lt in records], link=records[0][3], nanos=True))
    keylog = tmp_path / "sslkeys.log"
    keylog.write_bytes(b"".join(secrets))
    truth = next(t for t in load_truth(src)["tls"] if t.get("transport") == "quic")
    want = truth["server_cert_subject_cn"]
    assert want

    without = _quic_records([str(bare)])
    assert without and without[0]["cert_subject_cn"] is None
    with_keys = _quic_records(["--keylog", str(keylog), str(bare)])
    assert with_keys[0]["cert_subject_cn"] == want
    assert with_keys[0]["server_name"] == truth["sni"]
    two_workers = _quic_records(["--keylog", str(keylog), "--workers", "2", str(bare)])
    assert two_workers[0]["cert_subject_cn"] == want
