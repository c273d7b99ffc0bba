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
from hubfleet.inputs import read_yaml, show

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
        data, source = yaml.safe_load(text), "flavors.yaml"
    else:
        data, source = read_yaml(path), str(path)  # given on the command line: bounded like a descriptor
    rows = data.get(provider) if isinstance(data, dict) else None
    if not rows or not isinstance(rows, list):
        raise InvalidInput([FieldProblem(provider, f"no list of flavors for provider {provider!r} — write "
                                                   f"{provider}: [{{name: ..., vcpus: 2, ram: 4Gi, disk: 40Gi}}]")],
                           source=source)
    problems, flavors = [], []
    for i, row in enumerate(rows):
        try:
            vcpus = float(row["vcpus"])
            price = None if row.get("price_per_hour") is None else float(row["price_per_hour"])
            if not (0 < vcpus <= 1024) or (price is not None and not 0 <= price < 1e6):
                raise ValueError("vcpus must be 0 to 1024, price_per_hour 0 or more")
            flavors.append(Flavor(
                name=str(row["name"])[:64], vcpus=vcpus, ram_bytes=parse_quantity(row["ram"]),
                disk_bytes=parse_quantity(row["disk"]), price_per_hour=price,
            ))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problems.append(FieldProblem(f"{provider}[{i}]", f"bad flavor row ({show(str(exc), 120)}) — each needs "
                                                             "name, vcpus, ram, disk"))
    if problems:
        raise InvalidInput(problems, source=source)
    return Catalogue(tuple(flavors), currency=str(data.get("currency", "EUR")))
