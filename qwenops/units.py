"""The one set of unit conversions. Memory is reported in GiB (2**30 bytes) and MiB, as vLLM and
nvidia-smi report it; "GB" in a product name is decimal and is never converted here."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3

# One set of bounds for every size and token count qwenops accepts (profile fields, plan's flags, the
# planner's inputs): far above any GPU, checkpoint or context length, yet small enough that
# GiB x 2**30 and tokens x bytes stay finite floats (`inf` or 1e308 would overflow int(x * GIB)).
MAX_GIB = 1024.0**2
MAX_TOKENS = 10**9


def mib_to_gib(mib: float) -> float:
    return mib / KIB


def bytes_to_gib(size: float) -> float:
    return size / GIB


def gib_to_mib(gib: float) -> float:
    return gib * KIB
