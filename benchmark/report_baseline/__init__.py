"""The lab report's own setup, kept as the benchmark's baseline: its haproxy.cfg verbatim and its Flask app."""
