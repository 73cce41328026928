"""A robot arm moving crucibles between the lab's positions, as an OPC UA server (a PLC-run arm).

Nodes under ``Objects/Robot``: ``At`` (String: the position the gripper is at), ``Holding`` (String: the crucible in
the gripper, '' when empty), ``Busy`` (Boolean), ``Fault`` (String, '' when none: a protective stop's reason, latched
until ``Reset``), ``Positions`` (String, the taught positions separated by spaces), ``Moves`` (Int32, moves done).
``Move(source, destination)`` starts a pick-and-place and returns at once (``BadInvalidState`` while busy or
faulted, ``BadInvalidArgument`` for an untaught position); each leg takes ``move_s`` model seconds, the grip and the
release ``grip_s``. The gripper takes the crucible that is at ``source`` in the shared world (an empty source is an
empty move, as an arm without a gripper sensor cannot tell; ``fault_on_empty_pick`` makes it a fault) and a
destination that already holds a crucible is a collision: protective stop, the crucible stays in the gripper.
``Stop`` halts the arm where it is (a crucible in the gripper stays there).

``Placed`` (String, JSON ``{position: tag}``) is the arm controller's own record of what it put where, the table a
cell's PLC keeps for its nests: ``Move(source, destination, tag)`` names what the client says it carries (``tag``
optional: without one the entry of ``source`` travels on); when the gripper closes at ``source`` that entry goes,
when it sets the crucible down at ``destination`` the tag is written there. It is the arm's belief, never the
world's truth (an empty pick still records the place, as the arm cannot tell), it lives in the controller, so it
outlives the client that asked for the moves (an orchestrator killed and resumed reads it back), and
``Forget(position)`` clears an entry an operator emptied by hand. Only this arm's moves are in it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asyncua import ua
from labloop_simulators.background import background

from labloop.transports.simulation import SimulatorProcess

from .opcua_base import OpcuaTool, cancel, refuse, tool_method
from .world import World, at, positions


class RobotArm(OpcuaTool):
    address_template = "opc.tcp://{host}:{port}/labloop/robot"
    object_name = "Robot"

    def __init__(
        self,
        robot: str = "robot1",
        world: str | None = None,
        move_s: float = 15.0,
        grip_s: float = 3.0,
        fault_on_empty_pick: bool = False,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.robot, self.world = robot, World(world)
        self.move_s, self.grip_s, self.strict = float(move_s), float(grip_s), fault_on_empty_pick
        self.taught = positions()
        self.task: asyncio.Task[None] | None = None
        self.log: list[tuple[str, str, str]] = []
        self.placed: dict[str, str] = {}  # position -> tag: the controller's record of what it put where

    async def build(self) -> None:
        await self.var("At", "home", ua.VariantType.String)
        await self.var("Holding", "", ua.VariantType.String)
        await self.var("Busy", False, ua.VariantType.Boolean)
        await self.var("Fault", "", ua.VariantType.String)
        await self.var("Positions", " ".join(self.taught), ua.VariantType.String)
        await self.var("Moves", 0, ua.VariantType.Int32)
        await self.var("Placed", "{}", ua.VariantType.String)
        text = ua.VariantType.String
        await self.method("Move", self._move, [text, text, text], [ua.VariantType.Boolean])
        await self.method("Forget", self._forget, [text], [ua.VariantType.Boolean])
        await self.method("Stop", self._stop, [], [ua.VariantType.Boolean])
        await self.method("Reset", self._reset, [], [ua.VariantType.Boolean])

    @tool_method
    async def _move(self, parent: Any, source: str, destination: str, tag: str = "") -> bool:
        if await self.get("Busy") or await self.get("Fault"):
            raise refuse("BadInvalidState")
        if source not in self.taught or destination not in self.taught:
            raise refuse("BadInvalidArgument")
        await self.set("Busy", True)
        self.task = background(self._run(source, destination, tag))
        return True

    async def _record(self, position: str, tag: str | None) -> None:
        if tag:
            self.placed[position] = tag
        else:
            self.placed.pop(position, None)
        await self.set("Placed", json.dumps(self.placed, sort_keys=True))

    async def _run(self, source: str, destination: str, tag: str = "") -> None:
        try:
            await self.set("At", "moving")
            await asyncio.sleep(self.move_s / self.ts)
            await self.set("At", source)
            await asyncio.sleep(self.grip_s / self.ts)
            with self.world.transaction() as w:
                code = at(w, source)
                if code is not None:
                    w["crucibles"][code]["location"] = self.robot
            carried = tag or self.placed.get(source, "")
            await self._record(source, None)  # the gripper closed there: the arm believes it took what it put there
            if code is None and self.strict:
                await self.set("Fault", f"nothing to pick at {source}")
                return
            await self.set("Holding", code or "")
            await self.set("At", "moving")
            await asyncio.sleep(self.move_s / self.ts)
            await self.set("At", destination)
            with self.world.transaction() as w:
                there = at(w, destination)
                if there is None and code is not None:
                    w["crucibles"][code]["location"] = destination
            if there is not None and code is not None:
                await self.set("Fault", f"protective stop: {destination} is occupied by {there} (collision)")
                return
            await self._record(destination, carried)  # set down: a Stop during the release leaves it there
            await asyncio.sleep(self.grip_s / self.ts)
            await self.set("Holding", "")
            await self.set("Moves", int(await self.get("Moves")) + 1)
            self.log.append((code or "", source, destination))
        finally:
            await self.set("Busy", False)

    @tool_method
    async def _stop(self, parent: Any) -> bool:
        return await cancel(self.task)

    @tool_method
    async def _forget(self, parent: Any, position: str) -> bool:
        known = position in self.placed
        await self._record(position, None)
        return known

    @tool_method
    async def _reset(self, parent: Any) -> bool:
        await self.set("Fault", "")
        return True

    def fault(self, kind: str, **kw: Any) -> bool:
        if kind == "protective_stop":
            background(self.set("Fault", str(kw.get("reason", "protective stop (injected)"))))
            return True
        return False

    def clear_faults(self) -> None:
        if "Fault" in self.nodes:
            background(self.set("Fault", ""))

    def state(self) -> dict[str, Any]:
        return {"robot": self.robot, "moves": [list(m) for m in self.log], "placed": dict(self.placed)}


class RobotEndpoint(SimulatorProcess):
    """The simulated arm in its own process, as the conformance kit's endpoint for the Python driver
    (``labloop devices check labloop_devices.solid_state.robot:OpcuaRobot``)."""

    def __init__(self, **options: Any):
        super().__init__("labloop_simulators.solid_state_lab.robot:RobotArm", {"time_scale": 30.0, **options})
