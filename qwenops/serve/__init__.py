"""`qwenops serve`: the core (run.py) turns a profile into a supervised vLLM server; the supervision
itself is qwenops.supervisor's."""
