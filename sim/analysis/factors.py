"""Swept factor values as a reader wrote them, and in the order of their values.

A sweep file says ``swap: [off, 200MiB/s]``; YAML reads ``off`` as the boolean
false and runs.parquet holds a factor of mixed types as text, so the table says
``false``.  Figures and the report show a factor's values as the sweep file
writes them (``swap=off``), read from the file the manifest names, and order
them by the value they stand for (64, 128, 256, 512 and 512MiB before 1GiB,
not the order of their text).  Reads YAML and tables; never imports SimPy or
the model.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sim.config.sweepfile import written_values
from sim.schema.units import parse_duration, parse_rate, parse_size

log = logging.getLogger(__name__)

# the unit families a factor value may carry, tried in this order; one family must read them all
PARSERS: tuple[Callable[[str], float], ...] = (float, parse_size, parse_duration, parse_rate)


def point_labels(manifest: dict[str, Any]) -> dict[str, dict[int, str]]:
    """For each factor of a sweep's manifest: grid point -> the value as the sweep file writes it.

    The sweep file is the one the manifest names; a factor whose values there no longer are the
    manifest's (the file was edited since, or is not on this machine) gets none, and its values
    are shown as :func:`plain_text` shows table cells."""
    sweep = manifest.get("sweep") or {}
    factors, points = sweep.get("factors") or {}, sweep.get("points") or []
    if isinstance(sweep.get("written"), dict):  # recorded by the sweep when it ran
        written, loaded = sweep["written"], factors
    else:  # an older manifest: read the file it names, if it is still there and the same
        try:
            text = Path(sweep["file"]).read_text()
            written = written_values(text)
            loaded = (yaml.safe_load(text) or {}).get("factors") or {}
        except (KeyError, TypeError, OSError, yaml.YAMLError, AttributeError) as err:
            log.info("factor values shown as tabled: %s", err)
            return {}
    labels: dict[str, dict[int, str]] = {}
    for key, values in factors.items():
        texts = written.get(key)
        if texts is None or _canonical(loaded.get(key)) != _canonical(values) or len(texts) != len(values):
            continue
        keys = [_canonical(v) for v in values]
        labels[key] = {
            int(p["point"]): texts[keys.index(_canonical(p["values"][key]))]
            for p in points
            if key in p.get("values", {}) and _canonical(p["values"][key]) in keys
        }
    return labels


def _canonical(value: object) -> str:
    """JSON text of a value, so that false and 0 (equal in Python) stay apart."""
    return json.dumps(value, sort_keys=True, default=str)


def plain_text(value: object) -> str:
    """A table cell as text when the sweep file cannot say how it was written: 4 not 4.0,
    booleans as YAML writes them (false)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text.lower() if text in ("True", "False") else text


def as_written(runs: pd.DataFrame, manifest: dict[str, Any], columns: Iterable[str]) -> pd.DataFrame:
    """``runs`` with each factor column in ``columns`` as text written as in the sweep file
    (by the runs' ``point``), else as :func:`plain_text` shows it."""
    labels = point_labels(manifest) if "point" in runs else {}
    out = runs.copy()
    for column in columns:
        if column not in out:
            continue
        shown = out[column].map(plain_text)
        if column in labels:
            shown = out["point"].map(labels[column]).where(lambda s: s.notna(), shown)
        out[column] = shown.astype(str)
    return out


def numeric_values(texts: Iterable[str]) -> dict[str, float] | None:
    """Each value as a number, all read in one unit family (plain numbers, sizes in bytes,
    durations in seconds, rates per second), or None if no one family reads them all."""
    texts = list(dict.fromkeys(texts))
    for parse in PARSERS:
        try:
            values = {t: float(parse(t)) for t in texts}
        except (ValueError, TypeError):
            continue
        if all(math.isfinite(v) for v in values.values()):
            return values
    return None


def by_value(texts: Iterable[str]) -> list[str]:
    """Distinct values ordered by what they stand for when all are numbers (units understood:
    512MiB before 1GiB, 64 before 128), else in the order given (the sweep file's)."""
    texts = list(dict.fromkeys(texts))
    values = numeric_values(texts)
    return texts if values is None else sorted(texts, key=lambda t: values[t])
