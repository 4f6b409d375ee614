"""The build backend: setuptools', plus mypy among the build requirements when compiling.

pyproject.toml names this module (``backend-path = ["."]``). With TREADLE_COMPILE=1,
``pip wheel .`` and ``python -m build`` install mypy (which ships mypyc) into the
isolated build environment; without it, the build needs setuptools only, as before.
``setup.py`` does the compiling.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the rest of the backend, unchanged)

# The mypyc the compiled build is tested with: the source's workarounds (comments that
# name the compiled build) were written against this version.
MYPYC_REQUIREMENT = "mypy==2.4.1"


def _compiling() -> bool:
    return os.environ.get("TREADLE_COMPILE", "") not in ("", "0")


# When compiling, setuptools' own answer is not asked for: it runs setup.py to find
# setup_requires (treadle has none), and setup.py would need mypyc, not installed yet.


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    if _compiling():
        return [MYPYC_REQUIREMENT]
    return build_meta.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    if _compiling():
        return [MYPYC_REQUIREMENT]
    return build_meta.get_requires_for_build_editable(config_settings)
