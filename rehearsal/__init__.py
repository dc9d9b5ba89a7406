"""Local rehearsal of the lab on loopback: real HAProxy and web servers (granian), the report's tests and two drills.

`python -m rehearsal` runs it; `python -m benchmark` compares it with the report's own setup.
"""
