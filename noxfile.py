"""Developer sessions.  ``nox -l`` lists them; ``nox -s tests`` runs the suite."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "typing", "core_alone"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (what CI runs)."""
    session.install("-r", "requirements-dev.txt")
    session.run("pytest", *session.posargs)


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over the three packages and the tests."""
    session.install("-r", "requirements-dev.txt")
    session.run("mypy")


@nox.session
def core_alone(session: nox.Session) -> None:
    """flowscope-core installs and imports with typing-extensions as its only dependency."""
    session.install("packages/flowscope-core")
    session.run(
        "python",
        "-c",
        "import importlib.metadata as m, flowscope_core; "
        "deps = m.requires('flowscope-core') or []; "
        "assert [d.split('>')[0].split('=')[0].strip() for d in deps] == ['typing-extensions'], deps; "
        "import sys; bad = [k for k in sys.modules if k.split('.')[0] in ('flowscope', 'dpkt', 'lru', 'xxhash')]; "
        "assert not bad, bad; print('flowscope-core alone: ok')",
    )
