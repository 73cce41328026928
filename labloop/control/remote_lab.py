"""A campaign's remote device (``lab.devices.NAME: {remote: ADDR, agent: NAME | agent_key: Z85}``) as a proxy.

Kept apart from :mod:`.remote` (the wire) because it knows the store: the agent's public key is looked up by name
(:func:`labloop.identity.users.agent_key`: role ``agent``, not revoked), so an operator never copies keys into
campaign files.

:func:`remote_device` is the :data:`labloop.run.lab.RemoteConnector` that the CLI and the daemon's campaign child
hand to ``prepare_text`` / ``CampaignRunner.resume``: ``run`` sits below the network layer and never imports it.
Importing this module is cheap (pyzmq is loaded only when a remote device is connected).
"""

from __future__ import annotations

from typing import Any

from labloop.errors import LabloopError, SpecError


def agent_public_key(store_url: str | None, agent: str) -> str:
    """The Z85 public key of the agent called ``agent`` in the store at ``store_url``."""
    from labloop.identity.users import agent_key
    from labloop.store import Store

    if not store_url:
        raise SpecError(
            f"the lab names agent '{agent}' but no store is given to look its key up in",
            "pass --store (or set 'store' in the campaign file), or give the key inline as agent_key",
        )
    store = Store(store_url, create=False)
    try:
        return agent_key(store, agent)
    finally:
        store.close()


def remote_device(name: str, spec: Any, store_url: str | None) -> Any:
    """Connect the proxy of lab device ``name``; errors name the device, the address and how to start the agent."""
    from . import remote  # pyzmq only for labs that use it

    try:
        key = spec.agent_key or agent_public_key(store_url, spec.agent)
        return remote.connect(spec.remote, key, name=name, agent=spec.agent)
    except LabloopError as exc:
        raise SpecError(f"lab.devices.{name}: {exc.problem}", exc.fix) from None
