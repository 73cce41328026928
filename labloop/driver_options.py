"""Constructor options of a driver from a YAML or JSON file: shared by ``labloop devices check`` and
``labloop agent`` (which must start without loading the whole CLI). A root module, not part of the devkit: the agent
(runtime) reads a driver's options file too, and the runtime never imports the devkit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from labloop.errors import LabloopError


def load_config(path: Path | None) -> dict[str, Any]:
    """Constructor options from a YAML or JSON file (JSON is YAML): a mapping, or nothing."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise LabloopError(f"{path}: cannot read the config file: {exc.strerror}", "give an existing file") from None
    except yaml.YAMLError as exc:
        raise LabloopError(f"{path}: not valid YAML/JSON: {exc}", "fix the syntax at the place named") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LabloopError(
            f"{path}: expected a mapping of constructor options, got {type(data).__name__}",
            "write 'option: value' lines (YAML) or one JSON object",
        )
    return data
