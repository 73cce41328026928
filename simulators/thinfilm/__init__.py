"""Simulated thin-film lab: sputtered Nb:TiO2 films and their sheet resistance.

``physics`` (the model, its optimum and the deposition process profile), ``devices`` (chamber, four-point probe,
transfer robot on the labloop device base classes) and ``lab`` (``build_lab``, the ``thinfilm`` entry point).
"""
