"""Flavor catalogues: what sizes of host a backend offers (data, no planning).

Providers read them (a cloud's real flavors, the packaged list); sizing plans against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from hubfleet.descriptor import parse_quantity
from hubfleet.errors import FieldProblem, InvalidInput

GiB = 1024**3
BASE_DISK = 10 * GiB  # per host: the OS, Docker and the images


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: float
    ram_bytes: int
    disk_bytes: int
    price_per_hour: float | None = None


@dataclass(frozen=True)
class Catalogue:
    flavors: tuple[Flavor, ...]
    currency: str = "EUR"



def load_catalogue(provider: str, path: Path | None = None) -> Catalogue:
    """The flavor catalogue for a provider, from a YAML file (the packaged one by default)."""
    if path is None:
        text = resources.files("hubfleet.data").joinpath("flavors.yaml").read_text()
        source = "flavors.yaml"
    else:
        text, source = Path(path).read_text(), str(path)
    data = yaml.safe_load(text) or {}
    rows = data.get(provider)
    if not rows:
        raise InvalidInput([FieldProblem(provider, f"no flavors listed for provider {provider!r}")], source=source)
    problems, flavors = [], []
    for i, row in enumerate(rows):
        try:
            flavors.append(Flavor(
                name=str(row["name"]), vcpus=float(row["vcpus"]), ram_bytes=parse_quantity(row["ram"]),
                disk_bytes=parse_quantity(row["disk"]),
                price_per_hour=None if row.get("price_per_hour") is None else float(row["price_per_hour"]),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(FieldProblem(f"{provider}[{i}]", f"bad flavor row ({exc}) — each needs name, vcpus, ram, disk"))
    if problems:
        raise InvalidInput(problems, source=source)
    return Catalogue(tuple(flavors), currency=str(data.get("currency", "EUR")))
