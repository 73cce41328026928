"""What the real campaign runner's async scheduler decided, trial by trial (issue 25 diagnosis): for each trial of a
demo campaign run by ``CampaignRunner`` as ``acceleration.py`` runs it, how many results were known and how many
trials were in flight when it was proposed, and the ask's wall time.

    nice -n 19 python benchmarks/runner_rounds.py --chambers 4 --seed 0 --time-scale 1e5

Prints one JSON line per trial and one summary line (proposal rounds: trials proposed by the same ask).
Why: at time scale 1e5 an ask of ~1 s wall is ~28 simulated hours, longer than a trial, so the async scheduler
proposes in rounds, like a batch optimizer, and acceleration.py's replayed days are those of that batch optimizer.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chambers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--time-scale", type=float, default=1e5)
    args = ap.parse_args()
    import acceleration

    from labloop.run.campaign import CampaignRunner, prepare_text
    from labloop.store import Store

    text = acceleration.campaign_text(args.chambers, args.seed, args.budget, args.time_scale)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/b.db")
        runner = CampaignRunner.start(prepare_text(text, "rounds.yaml"), store)
        decision = runner.run()
        trials = store.trials(runner.campaign.id)
        store.close()
    rounds: list[int] = []
    prev = None
    for t in trials:
        known = sum(1 for u in trials if u.finished_at and u.finished_at < t.proposed_at)
        pending = sum(
            1 for u in trials if u.proposed_at < t.proposed_at and not (u.finished_at and u.finished_at < t.proposed_at)
        )
        ask_s = (t.info or {}).get("ask_seconds")
        if ask_s is not None and prev == (ask_s, known):
            rounds[-1] += 1  # proposed by the same ask
        else:
            rounds.append(1)
        prev = (ask_s, known)
        print(
            json.dumps(
                {
                    "trial": t.number,
                    "state": str(t.state),
                    "source": t.source,
                    "known_at_proposal": known,
                    "in_flight_at_proposal": pending,
                    "ask_s": ask_s,
                    "sheet_resistance": (t.values or {}).get("sheet_resistance"),
                }
            )
        )
    print(
        json.dumps(
            {
                "summary": "runner_rounds",
                "chambers": args.chambers,
                "seed": args.seed,
                "time_scale": args.time_scale,
                "stop": decision.rule,
                "target_trial": decision.evidence.get("trial"),
                "trials_per_ask": rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
