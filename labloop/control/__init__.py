"""The connected lab: verified identities (CURVE keys checked against the store), roles, the hash-chained audit
log, and (in other modules) the daemon, its live stream and remote agents."""
