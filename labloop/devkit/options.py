"""Moved to :mod:`labloop.driver_options` (the runtime's agent reads options files too and may not import the
devkit); re-exported here for integrators' code that imports it from the devkit."""

from labloop.driver_options import load_config

__all__ = ["load_config"]
