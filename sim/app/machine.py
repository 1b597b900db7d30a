"""``vmsim machine``: the zones a kernel would set up for a machine, or beside a real one's.

The options are checked as a scenario's ``machine`` section is (same units, same bounds), so
``--ram 256Mb`` is refused here for the reason it is refused in a scenario file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.schema.errors import InputError


def machine_spec(ram: str, cpus: int) -> Any:
    """--ram and --cpus checked as a scenario's machine.ram and machine.cpus are."""
    from pydantic import ValidationError

    from sim.config.paths import describe_error
    from sim.config.scenario import MachineSpec

    try:
        return MachineSpec.model_validate({"ram": ram, "cpus": cpus})
    except ValidationError as err:
        loc, message = describe_error(err.errors()[0], {}, MachineSpec)
        raise InputError(f"--{loc[0]}", None, message) from None


def check_profile_options(kernel: str, thp: str | None) -> None:
    """--kernel names a kernel profile; --thp is on, off or absent."""
    from sim.kernel.profile import PROFILES

    if kernel not in PROFILES:
        raise InputError("--kernel", None, f"expected one of {', '.join(PROFILES)}, got {kernel!r}")
    if thp not in (None, "on", "off"):
        raise InputError("--thp", None, f"expected on or off, got {thp!r}")


def zone_table(ram: str | None, cpus: int, thp: str | None, kernel: str) -> Any:
    """The boot-time zone table (sim.kernel.mm.zones.build_zones) of a machine of ``ram`` and
    ``cpus``; THP on from 512 MiB unless ``thp`` says otherwise."""
    from sim.kernel.mm.zones import MIB, build_zones
    from sim.kernel.profile import get_profile

    check_profile_options(kernel, thp)
    if ram is None:
        raise InputError("--ram", None, "expected a RAM size such as 256MiB (or --zoneinfo FILE)")
    spec = machine_spec(ram, cpus)
    thp_on = spec.ram >= 512 * MIB if thp is None else thp == "on"
    return build_zones(spec.ram, spec.cpus, thp_on, get_profile(kernel))


def zones_beside_real(
    path: Path, min_free_kbytes: int | None, dmesg: Path | None, kernel: str, thp: str | None
) -> dict[str, Any]:
    """The model's zones computed from a real /proc/zoneinfo's managed pages, beside the file's
    own values and the uncalibrated model's (sim.config.zoneinfo.check_zones)."""
    from sim.config.zoneinfo import check_zones, read_dmesg, read_zoneinfo

    check_profile_options(kernel, thp)
    dmesg_text = None if dmesg is None else read_dmesg(dmesg)
    return check_zones(read_zoneinfo(path), min_free_kbytes, dmesg_text, kernel, thp != "off")


def zone_table_json(table: Any) -> str:
    """The zone table as JSON (sim.kernel.mm.zones.zone_table_dict), indented."""
    import json

    from sim.kernel.mm.zones import zone_table_dict

    return json.dumps(zone_table_dict(table), indent=2)
