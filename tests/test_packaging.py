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


@pytest.mark.slow
@pytest.mark.parametrize("compiler", [True, False], ids=["with-cc", "without-cc"])
def test_flowscope_wheel_is_compiled_where_it_can_be_and_pure_python_elsewhere(tmp_path: Path, compiler: bool) -> None:
    """A wheel built with a C compiler carries the two extensions; without one, the build still succeeds."""
    import os
    import shutil
    import zipfile

    src = tmp_path / "flowscope"  # a copy: no build products of the checkout leak in, none are left there
    shutil.copytree(
        REPO / "packages" / "flowscope", src, ignore=shutil.ignore_patterns("build", "*.so", "*.c", "__pycache__", "*.egg-info")
    )
    env = dict(os.environ)
    env.pop("FLOWSCOPE_PURE_PYTHON", None)
    if not compiler:
        env["CC"] = "/nonexistent/cc"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if res.returncode != 0 and "No matching distribution" in res.stderr:
        pytest.skip("package index unreachable: " + res.stderr[-300:])
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("flowscope-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"flowscope/_fastpath.py", "flowscope/_tracker.py", "flowscope/_fastpath.pxd", "flowscope/py.typed"} <= set(names)
    extensions = sorted(n.split(".")[0] for n in names if n.endswith(".so") or n.endswith(".pyd"))
    assert extensions == (["flowscope/_fastpath", "flowscope/_tracker"] if compiler else [])
    assert not [n for n in names if n.endswith(".c")]
