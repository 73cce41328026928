"""Which lab does the work: its devices (local drivers, described instruments, remote agents), stations, buffers,
suspenders and calibration ages, and the workflow steps every trial runs on it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .base import _Model
from .consumables import ConsumablesSpec


# --------------------------------------------------------------------------------------------------- lab
class DeviceSpec(_Model):
    """A device of the lab: given by its driver (entry point in 'labloop.devices' or 'module:attr'), or remote: served
    by ``labloop agent`` on another computer at ``remote`` (its public key from the store's ``users`` table by the
    ``agent`` name, or inline as ``agent_key``)."""

    driver: str | None = Field(None, description="Driver of a device plugged into this computer.")
    file: str | None = Field(
        None,
        description="Instrument description (YAML, docs/drivers.md): a declarative "
        "device built by labloop; a relative path is resolved from the campaign file's folder.",
    )
    spec: dict[str, Any] | None = Field(None, description="The instrument description inline, instead of 'file'.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the driver (for a "
        "described instrument: 'address' and 'timeout' override the description's).",
    )
    remote: str | None = Field(None, description="Address of the agent serving the device, e.g. tcp://10.0.0.5:7600.")
    agent: str | None = Field(None, description="The agent's name in the store's users (role agent): its key.")
    agent_key: str | None = Field(None, description="The agent's CURVE public key (Z85), instead of 'agent'.")

    @model_validator(mode="after")
    def _driver_or_remote(self) -> DeviceSpec:
        given = [k for k in ("driver", "remote", "file", "spec") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give either 'driver' (a device on this computer), 'file' or 'spec' (an instrument "
                "described in YAML) or 'remote' (an agent's address)"
                + (f"; got {' and '.join(given)}" if given else "")
            )
        if self.remote is None:
            if self.agent or self.agent_key:
                raise ValueError("'agent' and 'agent_key' belong to a remote device (add 'remote: tcp://HOST:PORT')")
            return self
        host, _, port = self.remote.removeprefix("tcp://").rpartition(":")
        if not self.remote.startswith("tcp://") or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"remote '{self.remote}' is not an agent address: write tcp://HOST:PORT")
        if self.config:
            raise ValueError(
                "a remote device is configured on the agent's computer (labloop agent --config), "
                "not here: drop 'config'"
            )
        if not (self.agent or self.agent_key) or (self.agent and self.agent_key):
            raise ValueError(
                "name the agent ('agent: NAME', its key is looked up in the store) or give its "
                "public key ('agent_key: Z85'), one of the two"
            )
        if self.agent_key is not None and len(self.agent_key) != 40:
            raise ValueError("agent_key must be a Z85 CURVE public key (40 characters; `labloop users list`)")
        return self


class LabSpec(_Model):
    """Which lab runs the campaign: a simulator that builds its devices, and/or named real drivers."""

    simulator: str | None = Field(
        None, description="Simulated lab: entry point name in 'labloop.simulators' or 'package.module:attribute'."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Options for the simulator (noise, seed, ...).")
    devices: dict[str, DeviceSpec] = Field(default_factory=dict, description="Real drivers by device name.")
    time_scale: float = Field(1.0, gt=0, description="Simulated devices run this many times faster than real time.")
    stations: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Station kinds: kind -> interchangeable devices (e.g. deposition: [chamber1, chamber2]). "
        "Workflow steps may name a kind instead of a device. Every device is also a kind of its own.",
    )
    buffers: list[str] = Field(
        default_factory=list,
        description="Places (racks, hotels) where the robot may park a finished sample whose next station is busy, "
        "so that the station it sits in can take the next sample.",
    )
    suspenders: list[SuspenderSpec] = Field(
        default_factory=list, description="Conditions that pause every run while a monitored signal is out of band."
    )
    calibration: dict[str, CalibrationPolicy] = Field(
        default_factory=dict,
        description="Maximum calibration age per device (device -> {max_age, on_expiry}); see CalibrationPolicy.",
    )
    consumables: ConsumablesSpec | None = Field(
        None,
        description="Stocks and countable items the trials use up (labloop/spec/consumables.py): the store "
        "keeps their levels, the optimizer proposes only what is left, the operator is alerted and refills.",
    )
    batching: dict[str, BatchSpec] = Field(
        default_factory=dict,
        description="Batch stations by station kind (or device): how many samples one run of the station takes "
        "and what they must share (a furnace: one firing profile); see BatchSpec and labloop/run/batching.py. "
        "A kind not named here takes one sample at a time.",
    )
    identity: IdentitySpec | None = Field(
        None,
        description="Sample identity checks: which reader reads the sample a station holds (labloop/run/identity.py).",
    )

    @model_validator(mode="after")
    def _something(self) -> LabSpec:
        if self.simulator is None and not self.devices:
            raise ValueError("name a simulator or at least one device")
        return self


class BatchSpec(_Model):
    """A station that processes several samples in one run (a box furnace fires up to 4 crucibles on one profile).
    Trials whose ``batch_key`` parameters are equal share a run; a part-full batch fires when no other trial could
    join within ``max_wait_s`` lab seconds, or when it has waited that long (the rule: labloop/run/batching.py)."""

    capacity: int = Field(1, ge=1, le=1000, description="Samples one run of a station of this kind takes.")
    batch_key: list[str] = Field(
        default_factory=list,
        description="Parameters every sample of a batch must share (e.g. peak_c, dwell_h): the station's "
        "recipe for the run. Empty: any trials may share a run.",
    )
    max_wait_s: float = Field(
        0.0,
        ge=0,
        description="Lab seconds (simulated seconds for a simulated lab) a part-full batch waits for company "
        "before it fires. 0: fire as soon as the first sample is in.",
    )
    share_proposals: bool = Field(
        False,
        description="Ask the optimizer for proposals that share a batch: while a batch of this station has room "
        "(open, or a trial in flight with its key that has not reached the station), the next proposal is asked "
        "with the batch_key parameters fixed to that batch's values, and taken by the rule of share_min_ratio "
        "(labloop/run/batch_share.py). Why: with a continuous key (a firing temperature) independent proposals "
        "never share one, so every batch fires with one sample. Off: proposals ignore the batches.",
    )
    share_min_ratio: float = Field(
        0.0,
        ge=0,
        le=1,
        description="The price of sharing: the proposal constrained to a batch's key is taken when its expected "
        "improvement is at least this fraction of the unconstrained proposal's (both asked; a strategy without "
        "comparable acquisition values always shares). 0: always fill a batch that has room, one ask per proposal.",
    )

    @model_validator(mode="after")
    def _check(self) -> BatchSpec:
        dupes = sorted({k for k in self.batch_key if self.batch_key.count(k) > 1})
        if dupes:
            raise ValueError(f"batch_key names {dupes} more than once")
        if self.share_proposals and (self.capacity < 2 or not self.batch_key):
            raise ValueError(
                "share_proposals needs a capacity above 1 and a batch_key: there is no profile to share "
                "(set both, or leave share_proposals off)"
            )
        return self


class IdentitySpec(_Model):
    """Barcode checks of sample identity. Before a step on a station named in ``readers``, labloop reads the id of
    the sample there and compares it with the sample the store puts there; a mismatch (or no read after
    ``rereads`` more tries) fails the step and takes the station out of service until an operator looks.

    Why a reader is a device of its own, named here, and not a signal of every station: a barcode reader is a
    separate unit in a real lab (a fixed-mount scanner on a serial line), added to a station without touching the
    station's driver, and one reader may serve one station of any make. A station whose own driver reads barcodes
    names itself."""

    readers: dict[str, str] = Field(
        default_factory=dict,
        description="Station device -> its reader: 'DEVICE' or 'DEVICE.SIGNAL' (the signal holding the code read, "
        "default 'code'; the device is triggered first when it can be).",
    )
    rereads: int = Field(2, ge=0, le=20, description="Reads tried again after a no-read or a mismatch, before failing.")


class CalibrationPolicy(_Model):
    """How old a device's calibration may be. Before a step on the device whose calibration is older than
    ``max_age`` seconds (the lab's time: simulated seconds for a simulated device, wall-clock seconds for a real
    one; labloop/run/calibration.py), the scheduler either runs a
    recorded ``calibrate`` step (``on_expiry: calibrate``) or pauses the campaign saying how to calibrate
    (``pause``). Readings taken while it is older are flagged ``calibration_expired``."""

    max_age: float = Field(
        gt=0,
        description="Seconds a calibration stays valid, in the lab's time (simulated "
        "seconds for a simulated device). A calibration recorded before the run is used while "
        "younger.",
    )
    on_expiry: Literal["calibrate", "pause"] = Field("calibrate", description="Calibrate automatically, or pause.")


class SuspenderSpec(_Model):
    """Pause runs while ``signal`` (as 'device.component') is outside [low, high]; resume when it is back."""

    signal: str = Field(description="The monitored signal, e.g. 'chamber.chamber_pressure'.")
    low: float | None = Field(None, description="Lowest acceptable value.")
    high: float | None = Field(None, description="Highest acceptable value.")
    resume_after: float = Field(0.0, ge=0, description="Seconds the value must be back in band before resuming.")

    @model_validator(mode="after")
    def _check(self) -> SuspenderSpec:
        if self.low is None and self.high is None:
            raise ValueError("give low, high or both")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if "." not in self.signal:
            raise ValueError(f"signal '{self.signal}' must be given as 'device.component'")
        return self


ResumePolicy = Literal["rerun", "fail"]
DEFAULT_RESUME: dict[str, ResumePolicy] = {"transfer": "rerun", "synthesize": "fail", "measure": "rerun"}


class StepSpec(_Model):
    """One step of a trial's workflow, executed as a bluesky plan."""

    kind: Literal["transfer", "synthesize", "measure"] = Field(description="What the step does.")
    device: str | None = Field(
        None, description="The station or instrument (synthesize, measure): a device name or a station kind."
    )
    to: str | None = Field(
        None, description="Destination (transfer): a named place, a device, or the station kind of the next step."
    )
    robot: str = Field("robot", description="The robot doing a transfer.")
    name: str | None = Field(None, description="Step name in documents (default: kind and device).")
    retries: int = Field(0, ge=0, le=20, description="Extra attempts after a device error or timeout.")
    retry_backoff: float = Field(
        60.0, ge=0, description="Simulated/device seconds before the first retry; doubles each attempt."
    )
    timeout: float | None = Field(
        None, gt=0, description="Device seconds after which the step fails as a timeout (scaled by time_scale)."
    )
    on_resume: ResumePolicy | None = Field(
        None,
        description="What resume does with this step when a crash interrupted it: 'rerun' it, or 'fail' the trial "
        "(default: rerun transfers and measurements; fail syntheses, which consumed the sample).",
    )

    @model_validator(mode="after")
    def _check(self) -> StepSpec:
        if self.kind == "transfer" and not self.to:
            raise ValueError("a transfer step needs 'to'")
        if self.kind in ("synthesize", "measure") and not self.device:
            raise ValueError(f"a {self.kind} step needs 'device'")
        if self.kind == "synthesize" and self.on_resume == "rerun":
            raise ValueError("a synthesis consumes its sample: on_resume 'rerun' would process it twice; use 'fail'")
        if self.retries and self.resume_policy == "fail":
            raise ValueError(
                f"a {self.kind} that failed has consumed its sample: retries would process it again "
                f"(retry measurements and transfers; after a failed synthesis the recipe may be proposed again on a new sample)"
            )
        return self

    @property
    def resume_policy(self) -> ResumePolicy:
        return self.on_resume or DEFAULT_RESUME[self.kind]

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"transfer:{self.to}" if self.kind == "transfer" else f"{self.kind}:{self.device}"


LabSpec.model_rebuild()
