"""Renderers: a Profile becomes a vLLM argv, a start script, and (later) units and manifests."""
