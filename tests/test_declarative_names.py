"""A described instrument's signal may not take a name the device or bluesky already uses: the description fails
with the name, instead of ophyd's TypeError when the device is built."""

from __future__ import annotations

import pytest
from instrument_helpers import assert_description_refused


@pytest.mark.parametrize("name", ["position", "read", "stop", "transport"])
def test_a_signal_named_like_the_device_itself_is_refused(name):
    def rename(data):
        data["signals"][name] = data["signals"]["temperature"]

    assert_description_refused("furnace_modbus.yaml", rename, "taken by the device itself")
