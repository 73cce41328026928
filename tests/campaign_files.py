"""Campaign files for tests: the bundled thin-film demo, with changes, written to a temporary folder."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
THINFILM = REPO / "experiments" / "thinfilm.yaml"


def thinfilm(**changes: Any) -> dict[str, Any]:
    """The demo campaign as data; ``changes`` replace top-level keys, ``lab__x`` / ``stopping__x`` nested ones."""
    data = copy.deepcopy(yaml.safe_load(THINFILM.read_text()))
    for key, value in changes.items():
        if "__" in key:
            outer, inner = key.split("__", 1)
            data[outer][inner] = value
        else:
            data[key] = value
    return data


def write(tmp_path: Path, data: dict[str, Any], name: str = "campaign.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
