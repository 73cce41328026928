"""The connected lab: the daemon, its live stream, the ZAP handler that checks CURVE keys against the store, the
hash-chained audit log, and remote agents. Who someone is and what they may do (keys, roles, users) is
:mod:`labloop.identity`, which the dashboard and the CLI share."""
