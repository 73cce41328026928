"""The connected lab: identities and keys, the control API, the live stream and remote instruments."""
