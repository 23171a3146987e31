"""`qwenops smoke-stream`: the core (run.py) opens streams, judges and measures them -> SmokeReport."""
