"""Simulated instruments behind real protocol servers (pymodbus, a VISA socket instrument, a serial socket
endpoint), each driven by a physics model. Started in their own process by ``labloop.transports.simulation``."""
