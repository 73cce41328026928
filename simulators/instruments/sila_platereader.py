"""A microplate reader as a SiLA 2 server (the sila2 package's own gRPC server, its own process, 127.0.0.1).

One feature, ``PlateReaderControl`` (its Feature Definition below, as SiLA's FDL XML; sila2 builds the gRPC
service from it at run time, so no generated package is needed):

  property Temperature (Real, degC): the chamber temperature, following the setpoint with a lag (``tau`` model s)
  property LastAbsorbance (Real): the mean absorbance of the last read
  property LampFailure (Boolean): the flash lamp has failed (fault ``sensor_break``)
  command SetTemperature(Temperature: Real): the incubation setpoint; OutOfRange (a defined execution error)
      outside 15..45 degC
  observable command MeasurePlate(Wavelength: Integer nm) -> MeanAbsorbance (Real): reads a plate; takes
      ``read_time`` model seconds (progress reported), the result depends on the wavelength and the temperature;
      WavelengthNotSupported outside 230..1000 nm; fails with an undefined execution error when the lamp fails

The model runs on the simulator's clock (``time_scale`` model seconds per real second).
Faults (``fault(kind)``): ``bad_status`` (the next command raises an undefined execution error, as a reader whose
firmware reports an internal error), ``sensor_break`` (LampFailure).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import time
import uuid
from typing import Any

from sila2.framework import Feature
from sila2.framework.errors.defined_execution_error import DefinedExecutionError
from sila2.framework.errors.undefined_execution_error import UndefinedExecutionError
from sila2.server import FeatureImplementationBase, SilaServer

FDL = """<?xml version="1.0" encoding="utf-8" ?>
<Feature SiLA2Version="1.0" FeatureVersion="1.0" Originator="org.labloop" Category="simulation"
         xmlns="http://www.sila-standard.org"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://www.sila-standard.org https://gitlab.com/SiLA2/sila_base/raw/master/schema/FeatureDefinition.xsd">
  <Identifier>PlateReaderControl</Identifier>
  <DisplayName>Plate Reader Control</DisplayName>
  <Description>Incubation temperature and absorbance reads of a microplate reader.</Description>
  <Command>
    <Identifier>SetTemperature</Identifier>
    <DisplayName>Set Temperature</DisplayName>
    <Description>Set the incubation setpoint.</Description>
    <Observable>No</Observable>
    <Parameter>
      <Identifier>Temperature</Identifier>
      <DisplayName>Temperature</DisplayName>
      <Description>Setpoint in degC.</Description>
      <DataType><Basic>Real</Basic></DataType>
    </Parameter>
    <DefinedExecutionErrors><Identifier>OutOfRange</Identifier></DefinedExecutionErrors>
  </Command>
  <Command>
    <Identifier>MeasurePlate</Identifier>
    <DisplayName>Measure Plate</DisplayName>
    <Description>Read the absorbance of the plate at one wavelength.</Description>
    <Observable>Yes</Observable>
    <Parameter>
      <Identifier>Wavelength</Identifier>
      <DisplayName>Wavelength</DisplayName>
      <Description>Wavelength in nm.</Description>
      <DataType><Basic>Integer</Basic></DataType>
    </Parameter>
    <Response>
      <Identifier>MeanAbsorbance</Identifier>
      <DisplayName>Mean Absorbance</DisplayName>
      <Description>Mean absorbance over the plate.</Description>
      <DataType><Basic>Real</Basic></DataType>
    </Response>
    <DefinedExecutionErrors><Identifier>WavelengthNotSupported</Identifier></DefinedExecutionErrors>
  </Command>
  <Property>
    <Identifier>Temperature</Identifier>
    <DisplayName>Temperature</DisplayName>
    <Description>Chamber temperature in degC.</Description>
    <Observable>No</Observable>
    <DataType><Basic>Real</Basic></DataType>
  </Property>
  <Property>
    <Identifier>LastAbsorbance</Identifier>
    <DisplayName>Last Absorbance</DisplayName>
    <Description>The mean absorbance of the last read (0 before the first).</Description>
    <Observable>No</Observable>
    <DataType><Basic>Real</Basic></DataType>
  </Property>
  <Property>
    <Identifier>LampFailure</Identifier>
    <DisplayName>Lamp Failure</DisplayName>
    <Description>The flash lamp has failed.</Description>
    <Observable>No</Observable>
    <DataType><Basic>Boolean</Basic></DataType>
  </Property>
  <DefinedExecutionError>
    <Identifier>OutOfRange</Identifier>
    <DisplayName>Out Of Range</DisplayName>
    <Description>The setpoint is outside 15..45 degC.</Description>
  </DefinedExecutionError>
  <DefinedExecutionError>
    <Identifier>WavelengthNotSupported</Identifier>
    <DisplayName>Wavelength Not Supported</DisplayName>
    <Description>The wavelength is outside 230..1000 nm.</Description>
  </DefinedExecutionError>
</Feature>
"""


class _Impl(FeatureImplementationBase):
    """The feature's implementation: sila2 calls ``get_<Property>`` and ``<Command>`` by name."""

    def __init__(self, server: SilaServer, model: PlateReader):
        super().__init__(parent_server=server)
        self.model = model

    def get_Temperature(self, *, metadata: Any) -> float:
        return self.model.temperature()

    def get_LastAbsorbance(self, *, metadata: Any) -> float:
        return self.model.last

    def get_LampFailure(self, *, metadata: Any) -> bool:
        return self.model.lamp_failure

    def SetTemperature(self, Temperature: float, *, metadata: Any) -> None:
        self.model.check_firmware()
        if not 15.0 <= Temperature <= 45.0:
            raise DefinedExecutionError(
                self.model.feature.defined_execution_errors["OutOfRange"], f"{Temperature} degC is outside 15..45 degC"
            )
        self.model.set_setpoint(Temperature)

    def MeasurePlate(self, Wavelength: int, *, metadata: Any, instance: Any) -> float:
        m = self.model
        m.check_firmware()
        if not 230 <= Wavelength <= 1000:
            raise DefinedExecutionError(
                m.feature.defined_execution_errors["WavelengthNotSupported"], f"{Wavelength} nm is outside 230..1000 nm"
            )
        instance.begin_execution()
        m.measuring = True
        try:
            start = m.clock()
            while (done := (m.clock() - start) / m.read_time) < 1.0:
                if m.lamp_failure:
                    raise UndefinedExecutionError("the flash lamp failed during the read")
                instance.progress = min(done, 0.99)
                time.sleep(0.01)
            return m.absorbance(Wavelength)
        finally:
            m.measuring = False


class PlateReader:
    address_template = "sila://{host}:{port}"

    def __init__(
        self,
        time_scale: float = 1.0,
        tau: float = 60.0,
        ambient: float = 22.0,
        read_time: float = 30.0,
        noise: float = 0.002,
        seed: int = 0,
    ):
        self.time_scale, self.tau, self.ambient = float(time_scale), float(tau), float(ambient)
        self.read_time, self.noise = float(read_time), float(noise)
        self.rng = random.Random(seed)
        self.sp = self.pv = self.ambient
        self._t0, self._t = time.monotonic(), time.monotonic()
        self.lamp_failure = self.firmware_error = self.measuring = False
        self.reads = 0
        self.last = 0.0

    def clock(self) -> float:
        return (time.monotonic() - self._t0) * self.time_scale

    def temperature(self) -> float:
        now = time.monotonic()
        dt, self._t = (now - self._t) * self.time_scale, now
        self.pv = self.sp + (self.pv - self.sp) * math.exp(-dt / self.tau)
        return self.pv + self.rng.gauss(0.0, 0.02)

    def set_setpoint(self, value: float) -> None:
        self.temperature()
        self.sp = float(value)

    def absorbance(self, wavelength: int) -> float:
        """A dye's absorption band at 450 nm whose height falls 1 % per degC above 25 degC (it degrades)."""
        self.reads += 1
        band = math.exp(-(((wavelength - 450.0) / 60.0) ** 2))
        decay = 1.0 - 0.01 * max(0.0, self.temperature() - 25.0)
        self.last = 0.05 + 1.2 * band * decay + self.rng.gauss(0, self.noise)
        return self.last

    def check_firmware(self) -> None:
        if self.firmware_error:
            self.firmware_error = False
            raise UndefinedExecutionError("reader firmware error 0x2F (internal bus timeout)")

    async def serve(self, host: str) -> int:
        logging.getLogger("sila2").setLevel(logging.ERROR)
        self.feature = Feature(FDL)
        server = SilaServer(
            server_name="Simulated plate reader",
            server_type="PlateReader",
            server_description="labloop's simulated microplate reader",
            server_version="1.0",
            server_vendor_url="https://example.org/labloop",
            server_uuid=uuid.uuid4(),
        )
        server.set_feature_implementation(self.feature, _Impl(server, self))
        with socket.socket() as probe:  # sila2 does not report a port gRPC chose: take a free one
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: server.start_insecure(host, port, enable_discovery=False)
        )
        self.server = server
        return port

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "bad_status":
            self.firmware_error = True
            return True
        if kind == "sensor_break":
            self.lamp_failure = True
            return True
        return False

    def clear_faults(self) -> None:
        self.lamp_failure = self.firmware_error = False

    def state(self) -> dict[str, Any]:
        return {"pv": self.pv, "sp": self.sp, "measuring": self.measuring, "reads": self.reads}
