"""`qwenops status`: the core (run.py) reads a server's /metrics twice, an interval apart -> ServerStatus."""
