"""A loop that survives an exception says so: a warning with the traceback the first time, a count after, never
silence (the heartbeat, the lease release, the store tails, the poll connection's close)."""

from __future__ import annotations

import logging

from labloop.logs import Swallowed
from labloop.run.lease import CampaignLease
from labloop.store.events import CampaignTail


class Broken:
    """A store whose every call fails, as a store does when its disk or server goes away."""

    def __getattr__(self, name):
        def fail(*a, **k):
            raise OSError(f"{name}: the store is gone")

        return fail


def test_first_failure_is_a_warning_with_traceback_then_counted(caplog):
    s = Swallowed(logging.getLogger("labloop.test"), "the thing", every=10)
    with caplog.at_level(logging.WARNING, logger="labloop"):
        for i in range(25):
            try:
                raise ValueError(f"boom {i}")
            except ValueError as exc:
                s(exc)
    warnings = [r for r in caplog.records if r.name == "labloop.test"]
    assert len(warnings) == 3  # the first, the 10th, the 20th
    assert warnings[0].exc_info and "the thing failed" in warnings[0].getMessage()
    assert "20 times" in warnings[2].getMessage() and "boom 19" in warnings[2].getMessage()


def test_the_store_tail_and_the_lease_release_warn_instead_of_passing(caplog):
    tail = CampaignTail(Broken())
    tail._watch[1] = ["c", 0, None]
    lease = CampaignLease(Broken(), 1, "h:1:0:x", 1, 30.0, 0.0)
    with caplog.at_level(logging.WARNING, logger="labloop"):
        assert tail.read() == []
        lease.release()
    text = caplog.text
    assert "reading new stream events from the store failed" in text and "the store is gone" in text
    assert "releasing a campaign's lease failed" in text
