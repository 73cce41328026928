"""The daemon's action dispatcher: what a dashboard button does inside the daemon.

Why here and not in ``web``: the dashboard sits above the daemon and must not reach into its internals to act;
the daemon builds this dispatcher and the wiring (``labloop serve --http``) hands it to the dashboard, so a button
does exactly what the control method of the same name does (``resume`` restarts a campaign whose process died in a
new child; ``estop`` fans out at once), under the signed-in user's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from labloop.store import Store
from labloop.store.schema import Campaign

from . import methods, protocol

#: ``(store, campaign, action, args, user, wait) -> answer``: what the dashboard calls to carry out an action
Dispatcher = Callable[[Store, Campaign, str, "dict[str, Any]", str, float], str]


def daemon_dispatcher(supervisor: Any) -> Dispatcher:
    """Actions through the daemon's own control methods, acting on ``supervisor``'s campaigns."""

    def run(store: Store, c: Campaign, action: str, args: dict[str, Any], user: str, wait: float) -> str:
        # typed by their base class and their join: each method has its own parameters and handler
        make = cast(Callable[..., Any], protocol.METHODS[action])
        handler = cast(Callable[..., Any], methods.HANDLERS[action])
        params = make(campaign=c.id, wait=wait, **args)
        result = handler(methods.Call(user, "web", store, supervisor), params)
        if isinstance(result, dict) and "outcome" in result:
            return str(result["outcome"])
        if isinstance(result, dict) and "lines" in result:
            return "; ".join(result["lines"])
        return str(result)

    return run
