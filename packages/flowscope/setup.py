"""Build step for the one compiled module: everything else is in pyproject.toml.

``flowscope/_fastpath.py`` is compiled by Cython, with the static types of
``_fastpath.pxd``, into an extension module that Python imports in place of
the ``.py`` file.  The extension is optional: if Cython or a C compiler is
missing, or the build fails, the package installs as pure Python and runs
the same source interpreted (``flowscope.COMPILED`` tells which).  Set
``FLOWSCOPE_PURE_PYTHON=1`` to skip the build on purpose.
"""

from __future__ import annotations

import os
from typing import List

from setuptools import Extension, setup


def _extensions() -> List[Extension]:
    if os.environ.get("FLOWSCOPE_PURE_PYTHON") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    ext = Extension("flowscope._fastpath", ["src/flowscope/_fastpath.py"], optional=True)
    directives = {"language_level": 3, "annotation_typing": False}
    return list(cythonize([ext], compiler_directives=directives, quiet=True))


setup(ext_modules=_extensions())
