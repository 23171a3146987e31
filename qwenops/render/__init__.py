"""Renderers: a Profile becomes a vLLM argv, a start script, a deployment or a monitoring file.

run.py holds `qwenops render`'s core (resolve the profile, render the target, write it with -o); each
target format has its own module here, and emit.py quotes for each.
"""
