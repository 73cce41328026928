"""Small example drivers, used by the "write your first driver" guide (docs/drivers.md)."""
