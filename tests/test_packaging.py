"""Packaging promises: typed packages, and a core that stands alone."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {
    "flowscope-core": "flowscope_core",
    "flowscope": "flowscope",
    "flowscope-cli": "flowscope_cli",
}


@pytest.mark.parametrize("dist,module", sorted(PACKAGES.items()))
def test_every_package_ships_py_typed(dist: str, module: str) -> None:
    assert (REPO / "packages" / dist / "src" / module / "py.typed").is_file()


def test_mypy_strict_passes_on_packages_and_tests() -> None:
    # The settings (strict, the files) live in the root pyproject.toml.
    res = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


@pytest.mark.slow
def test_core_installs_and_imports_alone(tmp_path: Path) -> None:
    """flowscope-core in an empty venv: typing-extensions is its one dependency."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    res = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(REPO / "packages" / "flowscope-core")],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0 and "No matching distribution" in res.stderr:
        pytest.skip("package index unreachable: " + res.stderr[-300:])
    assert res.returncode == 0, res.stderr[-2000:]
    check = (
        "import importlib.metadata as m, sys, flowscope_core\n"
        "names = sorted(d.metadata['Name'].lower() for d in m.distributions())\n"
        "extra = [n for n in names if n not in ('flowscope-core', 'typing-extensions', 'typing_extensions', 'pip', 'setuptools')]\n"
        "assert not extra, extra\n"
        "assert not [k for k in sys.modules if k.split('.')[0] in ('flowscope', 'lru', 'xxhash', 'dpkt')]\n"
        "print(len(flowscope_core.__all__))\n"
    )
    res = subprocess.run([str(py), "-c", check], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) > 20
