"""``ivr bench``: how many concurrent calls one core holds with clean audio.

:mod:`ivr.bench.generator` plays the Asterisk side (simulated ARI + lean AudioSocket caller legs on one
shared deadline clock) against a separate ``ivr run`` process; :mod:`ivr.bench.report` ramps the number
of calls, takes medians of repeated runs, finds the largest clean N and writes the JSON result and plot.
"""

from ivr.bench.generator import BenchConfig, BenchError, run_once
from ivr.bench.report import BenchPlan, run_bench

__all__ = ["BenchConfig", "BenchError", "BenchPlan", "run_bench", "run_once"]
