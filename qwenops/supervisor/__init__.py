"""Supervise a vLLM server: states (the machine), process (spawn, killpg), health (readiness),
notify (sd_notify), bootlog (start-up phases, fatal causes) and runner (the loop)."""
