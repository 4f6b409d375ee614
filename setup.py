"""Build treadle: pure Python by default; with TREADLE_COMPILE=1, the hot modules compiled.

Everything else about the package is in pyproject.toml. This file only decides whether
to hand setuptools the extension modules that mypyc makes from the same source:

    pip install .                                  # pure Python
    TREADLE_COMPILE=1 pip wheel . -w dist/         # compiled wheel (mypy fetched for the build)

mypyc comes with mypy. The build backend (``build_backend.py``) asks for it only when
TREADLE_COMPILE=1, so a pure build never needs it; with ``--no-build-isolation`` it must
already be installed, at the version build_backend.py names. ``treadle.compiled`` tells
a program which build it runs on. docs/compiled.md says what differs and why.
"""

from __future__ import annotations

import os
import pathlib
import sys

from setuptools import setup

# The modules compiled: the core and the I/O hot path (docs/compiled.md says how they
# were chosen). Everything else stays interpreted; treadle/interpreted.py holds the few
# lines mypyc cannot compile faithfully (see its docstring).
COMPILED_MODULES = [
    "src/treadle/core/clock.py",
    "src/treadle/core/handles.py",
    "src/treadle/core/tracebacks.py",
    "src/treadle/core/running.py",
    "src/treadle/core/futures.py",
    "src/treadle/core/tasks.py",
    "src/treadle/core/loop.py",
    "src/treadle/waitqueue.py",
    "src/treadle/streams.py",
    # treadle.aio's run-once and its transport's read routine; the aio loop class and the
    # transport class stay interpreted (docs/compiled.md, "treadle.aio on the compiled
    # build", says why).
    "src/treadle/aio/engine.py",
    "src/treadle/aio/datapath.py",
]

# Where the mended copies of mypyc's runtime files go (see mend_runtime).
MENDED_RUNTIME_DIR = pathlib.Path("build", "mypyc-runtime-mended")


def extension_modules() -> list[object]:
    """mypyc's extension modules when TREADLE_COMPILE=1, else none (a pure build)."""
    flag = os.environ.get("TREADLE_COMPILE", "")
    if flag in ("", "0"):
        return []
    if flag != "1":
        raise SystemExit(f"TREADLE_COMPILE must be 1 (compile) or 0 (pure), got {flag!r}")
    from mypyc.build import mypycify  # only here: a pure build needs no mypy

    extensions = mypycify(COMPILED_MODULES, opt_level="3", debug_level="1")
    mend_runtime()
    for extension in extensions:
        extension.include_dirs.insert(0, str(MENDED_RUNTIME_DIR))
        for source in extension.sources:
            mend_weakrefs(pathlib.Path(source))
    return extensions


# --- Three faults of mypyc 2.4.1 and one cost, mended in what it generates ------------
# Each replacement must find its text exactly once: a different mypyc fails the build
# here rather than building something subtly wrong. All four are to be reported upstream.


def replace_once(text: str, old: str, new: str, where: str) -> str:
    if text.count(old) != 1:
        raise SystemExit(f"setup.py: mypyc's {where} has changed; cannot mend it ({old!r})")
    return text.replace(old, new)


def mend_runtime() -> None:
    """Copies of two runtime files, mended; the extensions include them before mypyc's own.

    1. A compiled coroutine throws an exception into what it awaits with the three-argument
       ``throw(type, value, traceback)``, which Python 3.12 deprecates for generators and
       coroutines (a DeprecationWarning on every cancellation of a compiled coroutine
       awaiting an interpreted one). The mended copy passes the exception alone, its
       traceback attached first.
    2. ``throw(exc)`` with the exception alone, into a compiled generator or coroutine,
       dropped the exception's traceback (the frames of the task that raised it). The
       mended copy keeps it.
    4. A cost rather than a fault: an exception passing through a compiled function gets
       a traceback entry made of a new code object and a new frame (about 2,000
       instructions), even when the same function catches it at once. Every task ends
       that way: ``Task._step`` catches the StopIteration of its coroutine's return,
       about a tenth of the instructions of a spawned task. The mended copy makes none
       for StopIteration, which is never shown as an error (a generator that leaks one
       raises RuntimeError, whose own traceback is untouched).
    """
    from mypyc.build import include_dir

    MENDED_RUNTIME_DIR.mkdir(parents=True, exist_ok=True)
    runtime = pathlib.Path(include_dir())
    misc = (runtime / "misc_ops.c").read_text()
    misc = replace_once(
        misc,
        "res = PyObject_CallFunctionObjArgs(_m, type, value, traceback, NULL);",
        "if (traceback != Py_None) PyException_SetTraceback(value, traceback);\n"
        "            res = PyObject_CallOneArg(_m, value);",
        "misc_ops.c",
    )
    (MENDED_RUNTIME_DIR / "misc_ops.c").write_text(misc)
    exc = (runtime / "exc_ops.c").read_text()
    exc = replace_once(
        exc,
        "        type = (PyObject *)Py_TYPE(value);\n    }",
        "        type = (PyObject *)Py_TYPE(value);\n"
        "        if (Py_IsNone(traceback)) {\n"
        "            PyObject *own = PyException_GetTraceback(value);\n"
        "            if (own != NULL) {\n"
        "                Py_DECREF(own);\n"
        "                traceback = own;\n"
        "            }\n"
        "        }\n    }",
        "exc_ops.c",
    )
    exc = replace_once(
        exc,
        "int line, PyObject *globals) {\n    PyObject *exc, *val, *tb;\n",
        "int line, PyObject *globals) {\n"
        "    if (PyErr_ExceptionMatches(PyExc_StopIteration)) return;\n"
        "    PyObject *exc, *val, *tb;\n",
        "exc_ops.c",
    )
    (MENDED_RUNTIME_DIR / "exc_ops.c").write_text(exc)


def mend_weakrefs(source: pathlib.Path) -> None:
    """Compiled Future and Task (and every class with a ``__dict__``) take weak references.

    3. mypyc 2.4.1 gives such classes a ``__weakref__`` slot on Python 3.11 only, and never
       clears their weak references when an instance dies (a weak reference would point
       at freed memory). The mended code asks Python 3.12+ to manage the slot, as it does
       for a class written in Python, and clears the references in the deallocator.
    """
    text = source.read_text()
    if "_template_ = {" not in text:
        return  # a module's shim, not the code
    if sys.version_info >= (3, 12):
        text = text.replace(
            "| Py_TPFLAGS_MANAGED_DICT,",
            "| Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF,",
        )
    text = text.replace(
        "PyObject_GC_UnTrack(self);",
        "PyObject_GC_UnTrack(self);\n"
        "    if (Py_TYPE(self)->tp_weaklistoffset != 0) PyObject_ClearWeakRefs((PyObject *)self);",
    )
    source.write_text(text)


setup(ext_modules=extension_modules())
