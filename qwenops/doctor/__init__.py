"""`qwenops doctor`: pure checks over recorded or probed host facts (checks.py), and the gathering (run.py)."""
