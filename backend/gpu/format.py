"""Display strings for GPU readings: units, and "N/A" for every value that could not be read."""

from __future__ import annotations

NA = "N/A"
GIB = 1024**3
MIB = 1024**2


def fmt(value: float | int | None, unit: str = "", digits: int = 0) -> str:
    """`value` with `digits` decimals and `unit`, or "N/A" for None."""
    if value is None:
        return NA
    text = f"{value:.{digits}f}"
    return f"{text} {unit}".rstrip() if unit and unit != "%" else f"{text}{unit}"


def fmt_bytes(value: int | None, unit: str = "GiB", digits: int = 1) -> str:
    """Bytes as GiB (or MiB), "N/A" for None."""
    if value is None:
        return NA
    return fmt(value / (GIB if unit == "GiB" else MIB), unit, digits)


def fmt_ratio(used: float | None, total: float | None, unit: str = "", digits: int = 0,
              scale: float = 1.0) -> str:
    """"used / total unit", with "N/A" for whichever part is missing."""
    if used is None and total is None:
        return NA
    def part(v: float | None) -> str:
        return NA if v is None else f"{v / scale:.{digits}f}"
    return f"{part(used)} / {part(total)} {unit}".rstrip()


def fmt_pstate(pstate: int | None) -> str:
    return NA if pstate is None else f"P{pstate}"
