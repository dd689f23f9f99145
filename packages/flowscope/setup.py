"""Build step for the compiled modules: everything else is in pyproject.toml.

``flowscope/_tracker.py`` and ``flowscope/_fastpath.py`` are compiled by
Cython, with the static types of their ``.pxd`` files, into extension
modules that Python imports in place of the ``.py`` files.  The extensions
are optional: if Cython or a C compiler is missing, or the build fails, the
package installs as pure Python and runs the same source interpreted
(``flowscope.COMPILED`` tells which; see ``flowscope/_accel.py``).  Set
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
    exts = [
        Extension(f"flowscope.{name}", [f"src/flowscope/{name}.py"], optional=True)
        for name in ("_tracker", "_fastpath")  # flowscope._accel.COMPILED_MODULES
    ]
    directives = {"language_level": 3, "annotation_typing": False}
    built = list(cythonize(exts, compiler_directives=directives, quiet=True))
    for ext in built:
        ext.optional = True  # cythonize() rebuilds each Extension and drops the flag
    return built


setup(ext_modules=_extensions())
