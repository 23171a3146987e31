"""Minimal safetensors files for model-directory tests: a valid header and exactly the bytes it describes."""

from __future__ import annotations

import json

_HEADER_BYTES = 128  # the JSON header, padded with spaces as the format allows


def safetensors_bytes(size: int) -> bytes:
    """A whole safetensors file of SIZE bytes holding one uint8 tensor."""
    data = size - 8 - _HEADER_BYTES
    assert data >= 0, f"a safetensors file needs at least {8 + _HEADER_BYTES} bytes"
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "w": {"dtype": "U8", "shape": [data], "data_offsets": [0, data]}}).encode()
    return _HEADER_BYTES.to_bytes(8, "little") + header.ljust(_HEADER_BYTES) + b"\0" * data
