"""The one error a serving process's startup raises: one line for the operator (``ivr run`` exits 2)."""

from __future__ import annotations


class StartupError(Exception):
    """One line for the operator; ``ivr run`` exits 2 with it."""
