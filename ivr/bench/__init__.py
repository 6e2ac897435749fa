"""``ivr bench``: how many concurrent calls a server holds with clean audio, next to a C reference.

:mod:`ivr.bench.servers` starts the server under test (the C reference of :mod:`ivr.bench.reference`,
``ivr run --no-ari`` or ``ivr run`` in ARI mode) as its own process; :mod:`ivr.bench.generator` plays
Asterisk's side of N calls (:mod:`ivr.bench.legs`) and measures one run; :mod:`ivr.bench.search` finds,
per rate and shape, the most calls that stay clean; :mod:`ivr.bench.report` prints and writes the result.
"""
