"""Which installed distribution owns a file: the ``*.dist-info/RECORD`` files of a site-packages folder, read
through importlib.metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

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
        dists = []
        for found in metadata.distributions(path=[str(self.site)]):
            name = found.metadata["Name"]
            if name:  # a dist-info without METADATA is no distribution
                dists.append((Distribution(canonicalize_name(name), found.version), found.files or []))
        for dist, files in sorted(dists, key=lambda d: (d[0].name, d[0].version)):
            for file in files:
                self._by_path[os.path.normpath(str(file))] = dist

    def owner(self, path: Path) -> Distribution | None:
        try:
            rel = os.path.relpath(path, self.site)
        except ValueError:
            return None
        return self._by_path.get(os.path.normpath(rel))

    def name(self, path: Path) -> str:
        dist = self.owner(path)
        return f"{dist.name} {dist.version}" if dist else UNOWNED
