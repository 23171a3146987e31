"""Configuration: settings (QWENOPS_* and the env file), the profile schema, and loading profiles.

settings.py reads the variables; paths.py says where profiles are found; profile.py is the schema and
its validation; loader.py resolves a profile with its sources (`profiles list|show` is qwenops/profiles/run.py).
"""
