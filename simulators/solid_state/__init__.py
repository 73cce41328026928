"""Simulated solid-state synthesis lab (LiMn2O4 from precursor powders): the physics only.

``chemistry`` (recipe + thermal history -> phase fractions), ``xrd`` (pattern from phases; phase fractions from a
pattern), ``furnace`` (box furnace: ramp limited by power, Newtonian cooling, trips, crucible cracks), ``balance``
and ``dispense`` (settling, drifting balance; dispenser error and jams), ``inventory`` (crucibles, precursor
stocks), ``barcode`` (misreads) and ``faults`` (the fault rates). Devices and protocol servers build on these.
"""
