"""The benchmark: our setup against the report's own, on loopback (python -m rehearsal.benchmark)."""
