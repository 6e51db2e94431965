"""The reliability suite: kills, freezes, outages, races and odd input against real processes.

``make test`` runs it at a small scale; ``make soak`` runs the same tests for hours
(``JOBTRAIL_SOAK_SCALE``, ``JOBTRAIL_SOAK_SECONDS``). What it proves is in docs/reliability.md.
"""
