"""The solid-state lab's instruments as protocol servers, each run in its own process by
``labloop.transports.simhost`` (``labloop sim serve solid_state`` starts them all; ``labloop devices check
devices/solid_state/FILE.yaml --simulated`` starts one). Physics from :mod:`labloop_simulators.solid_state`;
where a crucible is and what it holds lives in the shared :mod:`.world` file.
"""
