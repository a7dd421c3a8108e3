"""Sizes and speeds in human units (decimal, as file managers and phones show them)."""

from __future__ import annotations


def human_size(n: float) -> str:
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if round(n, 1) < 1000 or unit == "PB":  # 999,999 bytes is 1.0 MB, not 1000.0 kB
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """``"20MB"``, ``"1.5M"``, ``"512KiB"``, ``"20MB/s"`` or ``"1000"`` as a number of bytes."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)(?:/s)?\s*", text)  # a rate may say /s
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size like 20MB, 1.5M or 512KiB")
    return int(float(match.group(1)) * _UNITS[unit])
