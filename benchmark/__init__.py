"""The benchmark, a finished study whose decision docs/web-server.md records: our setup against the report's
own and the candidate web servers, on loopback (python -m benchmark). It runs the rehearsal's lab; the rehearsal
never imports it."""
