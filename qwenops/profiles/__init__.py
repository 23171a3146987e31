"""`qwenops profiles list|show`: the core (run.py) lists the profiles found and shows one as it resolves."""
