"""Stops ``pip install`` at once on a Python older than 3.11, with one clear line.

pip reads ``requires-python`` only after it has started resolving the dependencies, and on an older
Python it then backtracks through their releases for minutes. Building the project's metadata (the
first thing pip does with a local project) runs this file, so the check comes first. Everything else
about the build is in pyproject.toml.
"""

from setuptools import setup

setup()
