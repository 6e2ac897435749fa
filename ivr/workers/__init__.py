"""Worker processes: ``ivr run --workers N`` runs N call workers under one supervisor.

Each worker owns a share of the calls and paces their audio itself; the supervisor holds what exists once
per instance (the ARI events socket, the health and metrics port) and restarts a worker that dies.
"""
