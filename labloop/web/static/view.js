/* The campaign view's live updates in the browser: labloop/data/view.py's apply() and digest(), line for line.
   Change both together (tests/test_view.py runs the same events through both and compares). */
"use strict";
(function () {
  const STATE_ACTIONS = {running: ["pause", "stop", "estop"], paused: ["resume", "stop", "estop"], estopped: ["resume", "stop"]};
  const IN_FLIGHT = new Set(["proposed", "approved", "queued", "running", "measured", "interrupted"]);
  const TRIAL_EVENTS = new Set(["proposal", "approval", "trial_start", "measurement", "failure"]);
  const STOCK_EVENTS = new Set(["proposal", "trial_start", "failure"]);
  const REREAD = new Set(["paused", "resumed", "alert", "stopped", "campaign_start", "campaign_resume", "campaign_end", "crash", "takeover"]);

  function allowedActions(state, awaiting) {
    const out = (STATE_ACTIONS[state] || []).slice();
    if (awaiting && awaiting.length && ["running", "paused", "estopped"].includes(state)) out.push("approve", "reject");
    return out;
  }

  function bySample(a, b) { return a.sample < b.sample ? -1 : a.sample > b.sample ? 1 : 0; }

  function locate(view, sample, location, trial) {
    const have = view.samples.find(s => s.sample === sample);
    if (!have) { view.samples.push({sample: sample, location: location, trial: trial}); view.samples.sort(bySample); }
    else have.location = location;
  }

  function upsertTrial(view, t, awaiting) {
    const row = {number: t.number, state: t.state, source: t.source, params: t.params || {}, values: t.values || {},
                 failure: t.failure_reason, sample: t.sample_id, feasible: !!t.feasible};
    const old = view.trials.find(x => x.number === row.number);
    if (!old) { view.trials.push(row); view.trials.sort((a, b) => a.number - b.number); }
    else {
      view.counts[old.state] = (view.counts[old.state] || 1) - 1;
      if (!view.counts[old.state]) delete view.counts[old.state];
      Object.assign(old, row);
    }
    view.counts[row.state] = (view.counts[row.state] || 0) + 1;
    view.awaiting = view.awaiting.filter(n => n !== row.number);
    if (awaiting && row.state === "proposed") view.awaiting = view.awaiting.concat([row.number]).sort((a, b) => a - b);
    if (t.location && row.sample) locate(view, row.sample, t.location, row.number);
  }

  function step(view, kind, b) {
    const old = view.running_steps.find(r => r.trial === b.trial);
    const rest = view.running_steps.filter(r => r.trial !== b.trial);
    if (kind === "step_start") {
      const t = view.trials.find(x => x.number === b.trial);
      const r = {trial: b.trial, sample: old ? old.sample : (t ? t.sample : null), label: b.step, device: b.device,
                 attempt: b.attempt || 1, since: b.since || null};
      if (old && old.stream) r.stream = old.stream;
      rest.push(r);
    } else if (old && old.label !== b.step) {
      rest.push(old);  // the end of an earlier step, arriving after the next one began
    }
    view.running_steps = rest;
    if (kind === "step_end" && b.sample && b.location) locate(view, b.sample, b.location, b.trial);
  }

  /* Change view (in place; returned) by one stream event {seq, kind, body}. */
  function apply(view, event) {
    const seq = event.seq, kind = event.kind, body = event.body || {};
    if (seq != null) {
      if (seq <= (view.last_seq || 0)) return view;
      view.last_seq = seq;
    }
    if (TRIAL_EVENTS.has(kind) && body.trial && typeof body.trial === "object") {
      upsertTrial(view, body.trial, kind === "proposal" && !!body.approval);
      if (STOCK_EVENTS.has(kind) && view.inventory && view.inventory.length) view.stale = true;
    } else if (kind === "step_start" || kind === "step_end") {
      step(view, kind, body);
    } else if (kind === "best") {
      view.best = body.trial != null ? body : null;
    } else if (REREAD.has(kind)) {
      if (kind === "campaign_end") {
        view.campaign.state = body.state || view.campaign.state;
        view.campaign.stop_reason = body.stop_reason == null ? null : body.stop_reason;
      } else if (kind === "paused") {
        view.campaign.state = "paused";
      } else if (kind === "resumed") {
        view.campaign.state = "running";
        const back = body.restored || [];
        view.quarantined = view.quarantined.filter(d => !back.includes(d));
      }
      view.stale = true;
    }
    view.actions = allowedActions(view.campaign.state, view.awaiting);
    return view;
  }

  function digest(view) {
    const trials = {}, flying = new Set(), samples = {};
    view.trials.forEach(t => { trials[t.number] = t.state; if (IN_FLIGHT.has(t.state)) flying.add(t.sample); });
    view.samples.forEach(s => { if (flying.has(s.sample)) samples[s.sample] = s.location; });
    const b = view.best;
    return {state: view.campaign.state, trials: trials, samples: samples,
            best: b == null ? null : [b.trial, (b.pareto || []).slice()],
            actions: view.actions.slice().sort(), quarantined: view.quarantined.slice().sort()};
  }

  window.LabloopView = {apply: apply, allowedActions: allowedActions, digest: digest};
})();
