"""A failed step's stop document (and so the stream's step_end) carries the reason the store records, not the
repr of a failed ophyd Status (what an agent's death used to show: ``Status(obj=RemoteDevice(...), done=True,
success=False)``)."""

from __future__ import annotations

import pytest
from bluesky import RunEngine
from ophyd.status import Status

from labloop.run import plans
from labloop.run.executor import describe_failure


class Dying:
    """An instrument whose trigger fails the way a remote device's does when its agent goes away."""

    name = "probe"
    parent = None

    def trigger(self):
        st = Status(obj=self)
        st.set_exception(ConnectionError("the agent at tcp://10.0.0.5:7600 stopped answering"))
        return st

    def read(self):
        return {}

    def describe(self):
        return {}

    def read_configuration(self):
        return {}

    def describe_configuration(self):
        return {}


def test_the_stop_document_carries_the_device_s_own_reason():
    RE = RunEngine({}, call_returns_result=True)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    with pytest.raises(Exception) as err:
        RE(plans.measure(Dying(), timeout=5.0))
    stop = next(d for n, d in docs if n == "stop")
    assert stop["exit_status"] == "fail"
    assert stop["reason"] == describe_failure(err.value)
    assert "stopped answering" in stop["reason"] and "Status(" not in stop["reason"]
