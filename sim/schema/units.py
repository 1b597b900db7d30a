"""Units in scenario values: sizes ("256MiB"), durations ("10ms"), rates ("50MiB/s").

Sizes are bytes, durations seconds, rates per second.  A plain number is taken
in the base unit (bytes, seconds).  Binary prefixes (KiB, MiB, GiB, TiB) and
the kernel's shorthand (K, M, G, T, as in ``vmalloc=<size>``) are powers of
1024; decimal ones (kB, MB, GB, TB) are powers of 1000.  A lowercase ``b``
after a prefix (``Mb``, ``kb``) or alone is refused: it reads as bits.
Numbers too large for a float (``1e400``) are refused, not turned into
infinity.  ``Size``, ``Duration``
and ``Rate`` are annotated types for pydantic models.

A tenant's size (``ShareSize``: an anon_hog's or shmem's ``size``, memory at
boot) may instead be a share of the machine's RAM, ``"36%"``, so that a sweep
over RAM keeps the machine as full as it was (a fixed size makes a larger
machine emptier).  The scenario, which knows the RAM, turns the share into
bytes before its fields are validated (:func:`ram_share_bytes`, whole pages
rounded down), so a share and the bytes it gives are the same scenario: same
runs, same hash.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tib": 1 << 40,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "page": 4096,
    "pages": 4096,
}
# seconds per unit as (multiplier, divisor): dividing keeps "100us" == 1e-4 exactly
_TIME_UNITS = {
    "": (1, 1),
    "s": (1, 1),
    "sec": (1, 1),
    "ms": (1, 1_000),
    "us": (1, 1_000_000),
    "µs": (1, 1_000_000),
    "ns": (1, 1_000_000_000),
    "min": (60, 1),
    "h": (3600, 1),
}
_SHARE = re.compile(r"^\s*([0-9]{1,20}(?:\.[0-9]{0,20})?)\s*%\s*$")  # no exponent: "1e-99999%" is no share
_PAGE = 4096
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµ]*)\s*$")


def _split(value: str, kind: str) -> tuple[float, str]:
    match = _NUMBER.match(value)
    if not match:
        raise ValueError(f"expected a {kind} such as {_EXAMPLES[kind]}, got {value!r}")
    number = float(match.group(1))
    if number == float("inf"):
        raise ValueError(f"{value!r} is too large a number")
    return number, match.group(2)


_EXAMPLES = {"size": "'256MiB' or '4KiB'", "duration": "'10ms' or '60s'", "rate": "'50MiB/s' or '2000/s'"}


def parse_size(value: object) -> int:
    """Bytes in ``value`` ("256MiB", "1G", "8 pages", or an integer number of bytes)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as {_EXAMPLES['size']}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a size of at least 0, got {value}")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as {_EXAMPLES['size']}, got {value!r}")
    if value.rstrip().endswith("%"):
        raise ValueError(
            f"{value!r}: a share of RAM is taken only by anon_hog and shmem sizes and "
            f"machine.boot_memory; give a size such as {_EXAMPLES['size']}"
        )
    number, unit = _split(value, "size")
    if unit.endswith("b") and unit[:-1].lower() in ("", "k", "m", "g", "t"):
        decimal = {"k": "kB", "m": "MB", "g": "GB", "t": "TB"}.get(unit[:-1].lower(), "B")
        raise ValueError(f"size unit {unit!r} in {value!r} reads as bits; write {decimal} for bytes"
                         f"{' (powers of 1000) or ' + unit[:-1].upper() + 'iB (powers of 1024)' if unit[:-1] else ''}")
    scale = _SIZE_UNITS.get(unit.lower())
    if scale is None:
        raise ValueError(f"unknown size unit {unit!r} in {value!r}; use B, KiB, MiB, GiB, TiB, kB, MB, GB or pages")
    result = number * scale
    if result != int(result):
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(result)


def parse_ram_share(value: object) -> Fraction | None:
    """The share of RAM that ``value`` names ("36%", "12.5 %") as an exact fraction of 1, or
    None when ``value`` is not a percentage.  Raises ValueError for a malformed percentage or
    one above 100%."""
    if not isinstance(value, str) or not value.rstrip().endswith("%"):
        return None
    match = _SHARE.match(value)
    if not match:
        raise ValueError(f"expected a share of RAM such as '36%' or '12.5%', got {value!r}")
    share = Fraction(match.group(1)) / 100
    if share > 1:
        raise ValueError(f"expected a share of RAM from 0% to 100%, got {value!r}")
    return share


def ram_share_bytes(share: Fraction, ram: int) -> int:
    """``share`` of ``ram`` bytes in whole 4 KiB pages, rounded down (a tenant faults in pages).
    Exact: 35.9375% of 256 MiB is 92 MiB, not a float's neighbour of it."""
    return math.floor(share * ram / _PAGE) * _PAGE


def parse_share_size(value: object) -> int:
    """A size (see :func:`parse_size`) where a share of RAM is allowed.  The scenario has turned
    every well-formed share into bytes before this runs; one still here was malformed, out of
    range, or had no valid ``machine.ram`` to be a share of."""
    if parse_ram_share(value) is not None:
        raise ValueError(f"{value!r} is a share of RAM, and machine.ram is not a valid size to take it of")
    return parse_size(value)


def parse_duration(value: object) -> float:
    """Seconds in ``value`` ("10ms", "60s", "2min", or a number of seconds)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as {_EXAMPLES['duration']}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a duration of at least 0, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as {_EXAMPLES['duration']}, got {value!r}")
    if value.strip().lower() in ("inf", "infinity", "forever"):
        return float("inf")
    number, unit = _split(value, "duration")
    scale = _TIME_UNITS.get(unit.lower() if unit != "µs" else unit)
    if scale is None:
        raise ValueError(f"unknown time unit {unit!r} in {value!r}; use ns, us, ms, s, min or h")
    return number * scale[0] / scale[1]


def parse_rate(value: object) -> float:
    """Per-second amount in ``value``: "50MiB/s" gives bytes per second, "2000/s"
    (or a plain number) events per second."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate such as {_EXAMPLES['rate']}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a rate of at least 0, got {value}")
        return float(value)
    if isinstance(value, str) and "/" not in value:
        match = _NUMBER.match(value)
        if match and not match.group(2):  # a bare number, as YAML leaves "1e6"
            return float(match.group(1))
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"expected a rate such as {_EXAMPLES['rate']}, got {value!r}")
    amount, per = value.rsplit("/", 1)
    seconds = parse_duration("1" + per.strip()) if per.strip() not in ("", "s") else 1.0
    amount = amount.strip()
    count = float(amount) if _NUMBER.match(amount) and not _NUMBER.match(amount).group(2) else parse_size(amount)
    return count / seconds


def format_duration(seconds: float, round_up: bool = False) -> str:
    """``seconds`` in the largest of s, ms, us, ns that keeps it at 1 or more, to 3 significant
    digits (rounded up with ``round_up``, so that a bound it states still holds); reads back
    through :func:`parse_duration`."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            value = seconds / scale
            if round_up and value > 0:
                step = 10 ** (math.floor(math.log10(value)) - 2)
                value = math.ceil(round(value / step, 6)) * step
            return f"{value:g}{unit}" if unit == "s" else f"{value:.3g}{unit}"
    raise AssertionError("unreachable")


def format_size(nbytes: int) -> str:
    """The shortest exact binary-prefixed spelling of ``nbytes``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return f"{nbytes}B"


def _schema(kind: str, extra: str = "") -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
            "description": f"a {kind}, e.g. {_EXAMPLES[kind]}{extra}",
        }
    )


class RamShare:
    """Marks a size field that takes a share of RAM ("36%"): the scenario finds such fields by
    this marker in their metadata and resolves their shares against ``machine.ram``."""


Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, return_type=str), _schema("size")]
ShareSize = Annotated[
    int,
    BeforeValidator(parse_share_size),
    PlainSerializer(format_size, return_type=str),
    _schema("size", ", or a share of machine.ram such as '36%' (whole pages, rounded down)"),
    RamShare(),
]
Duration = Annotated[float, BeforeValidator(parse_duration), _schema("duration")]
Rate = Annotated[float, BeforeValidator(parse_rate), _schema("rate")]
