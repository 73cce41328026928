"""A campaign at a 10 % step failure rate (every deposition and measurement fails with probability 0.1, seeded)
on a two-chamber simulated lab, measurements retried twice: the campaign must complete, with every failure
recorded (failed step records == faults the simulator injected). Prints one JSON line.

    python benchmarks/fault_injection.py --trials 30 --fault-rate 0.1
"""

from __future__ import annotations

import argparse
import json
import tempfile

import yaml
from lab_throughput import campaign


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--fault-rate", type=float, default=0.1)
    ap.add_argument("--time-scale", type=float, default=36000.0)
    args = ap.parse_args()
    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    data = campaign("async", args.trials, args.time_scale, "random")
    data["lab"]["options"]["fault_rate"] = args.fault_rate
    data["workflow"][3]["retries"] = 2
    data["scheduling"]["quarantine_after"] = 4  # a 10 % fault rate is noise, not a broken station
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/b.db")
        runner = CampaignRunner.start(prepare_text(yaml.safe_dump(data), "faults.yaml"), store)
        decision = runner.run()
        cid = runner.campaign.id
        trials = store.trials(cid)
        steps = store.steps(campaign_id=cid)
        injected = sum(getattr(d, "faults", 0) for d in runner.p.lab.devices.values())
        failed_steps = [s for s in steps if s.state == "failed"]
        out = {
            "benchmark": "fault_injection",
            "fault_rate": args.fault_rate,
            "trials": len(trials),
            "stop_rule": decision.rule,
            "all_trials_terminal": all(t.state in ("done", "failed") for t in trials),
            "done": sum(t.state == "done" for t in trials),
            "failed": sum(t.state == "failed" for t in trials),
            "step_attempts": len(steps),
            "faults_injected": injected,
            "failed_steps_recorded": len(failed_steps),
            "failed_steps_with_reason": sum(1 for s in failed_steps if s.error),
            "failed_trials_with_reason": sum(1 for t in trials if t.state == "failed" and t.failure_reason),
            "retries": sum(1 for a in store.audit_log(cid) if a.action == "step.retry"),
            "every_failure_recorded": injected == len(failed_steps),
        }
        store.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
