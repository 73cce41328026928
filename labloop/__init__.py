"""labloop: an autonomous closed-loop lab orchestrator (bluesky + ophyd do the doing, botorch decides)."""

__version__ = "0.1.0"
