"""Base classes for lab equipment as ophyd Devices: stations, instruments and robots (see
:mod:`labloop.device_base`, where they live so that labloop's declarative builder can subclass them without importing
this plugin package). Drivers keep importing them from here."""

from labloop.device_base import Health, Instrument, LabDevice, Move, Robot, Station, check_limits

__all__ = ["Health", "Instrument", "LabDevice", "Move", "Robot", "Station", "check_limits"]
