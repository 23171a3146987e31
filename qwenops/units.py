"""The one set of unit conversions. Memory is reported in GiB (2**30 bytes) and MiB, as vLLM and
nvidia-smi report it; "GB" in a product name is decimal and is never converted here."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3


def mib_to_gib(mib: float) -> float:
    return mib / KIB


def bytes_to_gib(size: float) -> float:
    return size / GIB


def gib_to_mib(gib: float) -> float:
    return gib * KIB
