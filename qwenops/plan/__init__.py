"""`qwenops plan`: the core (run.py) gathers a plan's inputs and runs the memory model (qwenops.planner)."""
