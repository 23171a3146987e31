"""The memory planner: vLLM's memory model (memory.py), what a model is (modelinfo.py), and gathering
the inputs from profiles, probes and NVML (inputs.py)."""
