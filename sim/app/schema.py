"""``vmsim schema``: the JSON Schema of scenario files, for editors."""

from __future__ import annotations

import json
from pathlib import Path


def schema_text() -> str:
    """The scenario JSON Schema (sim.config.scenario.scenario_json_schema) as indented JSON."""
    from sim.config.scenario import scenario_json_schema

    return json.dumps(scenario_json_schema(), indent=2, allow_nan=False) + "\n"


def write_schema(out: Path) -> None:
    """Write :func:`schema_text` to ``out`` atomically."""
    from sim.record.results import atomic_write_bytes

    atomic_write_bytes(out, schema_text().encode())
