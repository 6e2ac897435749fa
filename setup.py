"""Stops ``pip install`` at once on a Python older than 3.11, with one clear line.

pip reads ``requires-python`` only after it has started resolving the dependencies, and on an older
Python it then backtracks through their releases for minutes. Building the project's metadata (the
first thing pip does with a local project) runs this file, so the check comes first.

It also declares the one native part, ``ivr.audiosocket._pacer`` (the AudioSocket pacing thread, plain C
and the Python C API, Linux: the thread in ``pacer_core.c``, its binding in ``_pacer.c``, ``pacer_reports.c`` and ``pacer_routes.c``): built when a C compiler is there, skipped otherwise (``optional``), and then
``ivr run`` paces on the event loop as before (README, AudioSocket, "Pacing"). Everything else about the
build is in pyproject.toml.
"""

import sys

# ruff assumes Python 3.11 (target-version) and would call this block dead: it is the point of the file.
if sys.version_info < (3, 11):  # noqa: UP036
    sys.exit(
        f"asterisk-ivr needs Python 3.11 or newer; this is Python {sys.version.split()[0]}. "
        "Create the venv with a newer Python, e.g.: python3.11 -m venv .venv"
    )

from setuptools import Extension, setup

PACER = Extension(
    "ivr.audiosocket._pacer",
    sources=[
        "ivr/audiosocket/_pacer.c",
        "ivr/audiosocket/pacer_core.c",
        "ivr/audiosocket/pacer_routes.c",
        "ivr/audiosocket/pacer_reports.c",
    ],
    depends=["ivr/audiosocket/pacer.h"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-fvisibility=hidden"],
    optional=True,
)

setup(ext_modules=[PACER] if sys.platform.startswith("linux") else [])
