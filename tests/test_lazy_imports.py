"""What importing labloop's run loop and its pytest plugin pulls in (issue 23: collection under 5 s).

torch and botorch take seconds to import. The run loop imports them only when it builds a search space, and the
pytest plugin, which pytest loads in every session of every project that has labloop installed, imports the
conformance kit (and bluesky) only when a test asks for it. Checked in a fresh interpreter, since this one has
long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: (modules imported together in one fresh interpreter, what that must not import)
PROBES = [
    (
        [
            "labloop.run.campaign",
            "labloop.run.scheduler",
            "labloop.strategy",
            "labloop.strategy.priors",
            "labloop.strategy.tables",
            "labloop_simulators.solid_state.xrd",
        ],
        ["torch", "botorch", "gpytorch", "labloop.strategy.space", "scipy.optimize"],
    ),
    (["labloop.devkit.pytest_plugin"], ["bluesky", "ophyd", "labloop.devkit.conformance"]),
]

PROBE = """
import importlib, json, sys
modules, heavy = json.loads(sys.argv[1])
for m in modules:
    importlib.import_module(m)
print(json.dumps([m for m in heavy if m in sys.modules]))
"""


def test_the_run_loop_and_the_pytest_plugin_import_no_heavy_library_until_used():
    for modules, heavy in PROBES:
        arg = json.dumps([modules, heavy])
        out = subprocess.run([sys.executable, "-c", PROBE, arg], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == [], f"importing {modules} imported {out.stdout.strip()}"


def test_the_lazy_names_are_the_real_classes():
    """``from labloop.strategy import SearchSpace`` (and CandidatePool) still gives the class, loaded on first use."""
    import labloop.strategy
    from labloop.strategy.space import CandidatePool, SearchSpace

    assert labloop.strategy.SearchSpace is SearchSpace
    assert labloop.strategy.CandidatePool is CandidatePool
    assert {"SearchSpace", "CandidatePool"} <= set(labloop.strategy.__all__)
