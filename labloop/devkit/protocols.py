"""The lab-equipment contract now lives in :mod:`labloop.contract` (the runtime imports it; the devkit is for
integrators). This module re-exports it so existing imports keep working."""

from labloop.contract import HasLimits, Health, LabInstrument, LabRobot, LabStation, Move

__all__ = ["HasLimits", "Health", "LabInstrument", "LabRobot", "LabStation", "Move"]
