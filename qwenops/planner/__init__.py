"""The memory planner: vLLM's memory model (memory.py) and gathering its inputs from profiles, probes
and NVML (inputs.py). What a model is lives below it, in qwenops.modelinfo, which hardware's recorded
probes also hold."""
