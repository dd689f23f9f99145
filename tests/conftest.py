"""Shared fixtures.

The public corpus (captures with tshark ground truth) lives outside the repo.
Its location comes from ``FLOWSCOPE_CORPUS`` and defaults to
``../shared/corpus`` relative to the repository root.  Tests that need it are
skipped, with a reason, when it is absent; the captures under
``tests/data`` ship with the repo and always run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def corpus_root() -> Path:
    """Where the public corpus is: ``$FLOWSCOPE_CORPUS`` or ``../shared/corpus``."""
    env = os.environ.get("FLOWSCOPE_CORPUS")
    return Path(env) if env else (REPO.parent / "shared" / "corpus")


def corpus_pcaps() -> list[Path]:
    """Every corpus capture that has a truth file, sorted by name."""
    d = corpus_root() / "pcaps"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix in (".pcap", ".pcapng") and p.with_suffix(".truth.json").exists())


def load_truth(pcap: Path) -> Dict[str, Any]:
    """The tshark ground truth beside a corpus capture."""
    data: Dict[str, Any] = json.loads(pcap.with_suffix(".truth.json").read_text())
    return data


@pytest.fixture
def corpus_dir() -> Path:
    """The corpus's ``pcaps`` folder; skips the test when the corpus is absent."""
    d = corpus_root() / "pcaps"
    if not d.is_dir():
        pytest.skip(f"public corpus not found at {d} (set FLOWSCOPE_CORPUS)")
    return d


@pytest.fixture
def data_dir() -> Path:
    """Captures that ship with the repo (``tests/data``)."""
    return DATA
