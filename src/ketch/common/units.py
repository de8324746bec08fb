"""docker's go-units wording for sizes and durations, shared by the CLI, the engine and progress output."""

from __future__ import annotations

__all__ = ["human_duration", "human_size"]

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 3) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units, ``precision`` significant digits (``4.26MB``);
    ``HumanSize`` (progress bars) is precision 4."""
    value, unit = float(size), 0
    while value >= 1000.0 and unit < len(_DECIMAL_UNITS) - 1:
        value /= 1000.0
        unit += 1
    return f"{_go_g(value, precision)}{_DECIMAL_UNITS[unit]}"


def _go_g(value: float, precision: int) -> str:
    text = f"{value:.{precision}g}"
    if "e" in text:  # Go writes at least two exponent digits, as Python does; keep its sign form
        mantissa, _, exp = text.partition("e")
        return f"{mantissa}e{exp[0]}{exp[1:].rjust(2, '0')}"
    return text


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration`` ("Less than a second", "About a minute", "2 hours", "3 weeks")."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go's Duration.Round(time.Hour)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


_RAM_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """go-units RAMInBytes: ``10m``, ``1.5g``, ``512k``, ``100`` (binary multiples; ``kb``/``kib`` alike)."""
    raw = text.strip().lower()
    number = raw.rstrip("bikmgtp")
    suffix = (
        raw[len(number) :].removesuffix("b").removesuffix("i") if raw[len(number) :] not in ("b",) else ""
    )
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"invalid size: '{text}'") from None
    if suffix not in _RAM_UNITS or value < 0:
        raise ValueError(f"invalid size: '{text}'")
    return int(value * _RAM_UNITS[suffix])
