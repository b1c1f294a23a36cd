"""Which installed distribution owns a file: the ``*.dist-info/RECORD`` files of a site-packages folder."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

UNOWNED = "(no distribution)"


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str


class Owners:
    """Maps files under a site-packages folder to the distribution whose RECORD lists them."""

    def __init__(self, site: Path) -> None:
        self.site = Path(site)
        self._by_path: dict[str, Distribution] = {}
        for info in sorted(self.site.glob("*.dist-info")):
            dist = _dist_from_folder(info)
            record = info / "RECORD"
            if not record.is_file():
                continue
            with open(record, newline="", encoding="utf-8", errors="replace") as fh:
                for row in csv.reader(fh):
                    if row and row[0]:
                        self._by_path[os.path.normpath(row[0])] = dist

    def owner(self, path: Path) -> Distribution | None:
        try:
            rel = os.path.relpath(path, self.site)
        except ValueError:
            return None
        return self._by_path.get(os.path.normpath(rel))

    def name(self, path: Path) -> str:
        dist = self.owner(path)
        return f"{dist.name} {dist.version}" if dist else UNOWNED


def _dist_from_folder(info: Path) -> Distribution:
    # "nvidia_cublas_cu12-12.8.4.1.dist-info" -> ("nvidia-cublas-cu12", "12.8.4.1"); METADATA would be exact
    # but costs a read per distribution for the same answer.
    stem = info.name[: -len(".dist-info")]
    name, _, version = stem.partition("-")
    return Distribution(name=name.replace("_", "-").lower(), version=version)
