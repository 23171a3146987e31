"""qwenops: supervise, check and measure a streaming Qwen3-14B service on vLLM."""

__version__ = "0.1.0"
