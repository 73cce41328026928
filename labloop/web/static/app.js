/* The live campaign page: draws the campaign view (labloop/data/view.py) the server embedded, then keeps it live
   from server-sent events with LabloopView.apply (static/view.js, the same function as the server's). An event whose
   effect it does not carry (a pause, an alert, a crash) marks the view stale: the page reads the view again
   (debounced) and applies on top what came after, so it ends where a fresh read would; process-stream readings are
   plotted as they arrive. EventSource reconnects by itself with Last-Event-ID, and the server sends what the page
   missed. */
"use strict";
(function () {
  const $ = id => document.getElementById(id);
  let snap = JSON.parse($("snapshot").textContent);
  const page = JSON.parse($("page").textContent);
  const live = window.labloopLive = {received: 0, lastSeq: snap.last_seq || 0, arrivals: [], refreshes: 0};
  let sortKey = "number", sortDir = -1;

  function text(tag, value, cls) { const e = document.createElement(tag); e.textContent = value == null ? "" : String(value); if (cls) e.className = cls; return e; }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
  function fmt(v) { return typeof v === "number" ? (+v.toPrecision(4)).toString() : (v == null ? "" : String(v)); }
  function better(o, a, b) { return o.direction === "maximize" ? a > b : a < b; }

  function render() {
    const c = snap.campaign, st = $("state"); st.textContent = c.state; st.className = "state s-" + c.state;
    $("liveness").textContent = snap.liveness ? snap.liveness.describe : "";
    $("note").textContent = c.note && (c.state === "running" || c.state === "paused") ? "waiting: " + c.note : "";
    $("stop-reason").textContent = c.stop_reason ? "stopped: " + c.stop_reason : "";
    document.body.setAttribute("data-state", c.state);
    renderControls();
    renderConvergence(); renderPareto(); renderLab(); renderStreams(); renderApprovals(); renderTrials();
  }

  function renderControls() {
    /* the buttons the server rendered are those the user's role allows; only those the campaign's state allows
       are shown (a finished campaign offers none) */
    const allowed = new Set(snap.actions || []);
    document.querySelectorAll("#controls button[data-action]").forEach(b => { b.hidden = !allowed.has(b.dataset.action); });
    $("controls").setAttribute("data-actions", [...allowed].filter(a => page.can[a]).sort().join(" "));
  }

  function renderBest() {
    /* the campaign's best as the view names it (labloop/run/best.py: feasible first; several objectives: the
       Pareto set and the one trial named) */
    const b = snap.best, p = $("best");
    p.setAttribute("data-trial", b ? String(b.trial) : "");
    p.setAttribute("data-pareto", b && b.pareto ? b.pareto.join(" ") : "");
    p.textContent = !b ? "best so far: no feasible trial yet" :
      `best so far: trial ${b.trial}: ${b.objective} = ${fmt(b.value)}${b.unit ? " " + b.unit : ""}` +
      (b.pareto ? ` (Pareto set: trials ${b.pareto.join(", ")})` : "");
  }

  function renderConvergence() {
    renderBest();
    const o = snap.objectives[0], pts = [], best = [];
    let b = null;
    snap.trials.slice().sort((x, y) => x.number - y.number).forEach(t => {
      const v = t.values[o.name];
      if (t.state !== "done" || typeof v !== "number") return;
      pts.push([t.number, v, `trial ${t.number}: ${fmt(v)}`]);
      if (!t.feasible) return;  /* best so far counts feasible trials only (labloop/run/best.py) */
      if (b === null || better(o, v, b)) b = v;
      best.push([t.number, b]);
    });
    const svg = LabloopPlot.chart($("convergence"), [
      {name: o.name + " (trial)", points: pts, kind: "dots", cls: "measured"},
      {name: "best so far", points: best, kind: "line", cls: "best"}],
      {xlabel: "trial", integerX: true, ylabel: o.name + (o.unit ? " / " + o.unit : ""),
       hlines: o.target != null ? [{y: o.target, label: "target " + fmt(o.target)}] : []});
    svg.id = "convergence-plot";
  }

  function renderPareto() {
    if (snap.objectives.length < 2) return;
    $("pareto-section").hidden = false;
    const [a, b] = snap.objectives;
    const done = snap.trials.filter(t => t.state === "done" && typeof t.values[a.name] === "number" && typeof t.values[b.name] === "number");
    const inFront = new Set((snap.best && snap.best.pareto) || []);  /* the view's Pareto set (labloop/run/best.py) */
    const front = done.filter(t => inFront.has(t.number));
    const pt = t => [t.values[a.name], t.values[b.name], `trial ${t.number}`];
    LabloopPlot.chart($("pareto"), [
      {name: "measured", points: done.map(pt), kind: "dots", cls: "measured"},
      {name: "Pareto front", points: front.map(pt).sort((p, q) => p[0] - q[0]), kind: "line", cls: "front"}],
      {xlabel: a.name, ylabel: b.name}).id = "pareto-plot";
  }

  function renderLab() {
    const box = clear($("lab"));
    const t = document.createElement("table"); t.id = "stations";
    const head = t.insertRow(); ["station", "does", "trial", "sample", "since (UTC)"].forEach(h => head.appendChild(text("th", h)));
    snap.running_steps.forEach(r => {
      const row = t.insertRow();
      [r.device || "?", r.label + (r.attempt > 1 ? ` (attempt ${r.attempt})` : ""), r.trial, r.sample, r.since || ""]
        .forEach(v => row.appendChild(text("td", v)));
    });
    if (!snap.running_steps.length) { const row = t.insertRow(); const c = text("td", "no station is working"); c.colSpan = 5; row.appendChild(c); }
    box.appendChild(t);
    /* where every sample of a trial in flight is (LabloopView.digest: what every surface agrees on) */
    const where = Object.entries(LabloopView.digest(snap).samples);
    const p = text("p", where.length ? "samples: " + where.map(([s, l]) => `${s} @ ${l}`).join(", ") : "no sample in flight");
    p.id = "samples"; p.setAttribute("data-samples", JSON.stringify(Object.fromEntries(where)));
    box.appendChild(p);
    if (snap.quarantined.length) { const q = text("p", "out of service: " + snap.quarantined.join(", "), "alert"); q.id = "quarantined"; box.appendChild(q); }
    snap.alerts.slice(-5).forEach(a => box.appendChild(text("p", `${(a.at || "").slice(11, 19)} ${a.action}: ${a.message || ""}`, "alert")));
    /* consumables (the view's inventory, from the store): what is left for new trials, low ones marked */
    const stocks = snap.inventory || [];
    if (stocks.length) {
      const inv = text("p", "stocks: " + stocks.map(s => `${s.name} ${fmt(s.left)} ${s.unit} left` +
        (s.used ? ` (${fmt(s.used)} used)` : "") + (s.low ? " LOW" : "")).join(", "), stocks.some(s => s.low) ? "alert" : "");
      inv.id = "inventory"; box.appendChild(inv);
    }
  }

  function renderStreams() {
    const box = clear($("streams"));
    plotStreams(box);
    const drawn = Date.now();
    unplotted.forEach(a => { a.shown = drawn; });
    unplotted = [];
  }

  function plotStreams(box) {
    if (!snap.running_steps.length) { box.appendChild(text("p", "no step is running")); return; }
    snap.running_steps.forEach(r => {
      const bySignal = {};
      (r.stream || []).forEach(p => { (bySignal[p.signal] = bySignal[p.signal] || []).push([p.t, p.value]); });
      const names = Object.keys(bySignal);
      if (!names.length) return;
      const div = document.createElement("div"); div.className = "stream";
      div.appendChild(text("h3", `trial ${r.trial} (now ${r.label} on ${r.device})`));
      /* the lab's minutes from the step's start (the simulated clock of a simulated lab: wall seconds x time scale),
         as the report draws them; a step the page learned of from the stream starts at its first reading */
      const t0 = r.started != null ? r.started : Math.min(...names.map(n => bySignal[n][0][0]));
      const perS = (snap.time_scale || 1) / 60;
      names.forEach(n => {
        const c = document.createElement("div"); div.appendChild(c);
        const pts = bySignal[n], every = Math.ceil(pts.length / DRAWN_POINTS);  // a line of a few hundred points is enough
        const shown = pts.filter((p, i) => i % every === 0 || i === pts.length - 1);
        LabloopPlot.chart(c, [{name: n, points: shown.map(p => [(p[0] - t0) * perS, p[1]]), kind: "line"}],
                          {xlabel: "lab min from the step's start", height: 150});
      });
      box.appendChild(div);
    });
  }

  function renderApprovals() {
    const box = clear($("approvals"));
    $("approvals-section").hidden = !snap.approval;
    if (!snap.awaiting.length) { box.appendChild(text("p", "nothing awaits approval")); return; }
    const byNum = {}; snap.trials.forEach(t => { byNum[t.number] = t; });
    snap.awaiting.forEach(n => {
      const t = byNum[n], row = document.createElement("div"); row.className = "approval"; row.id = "approval-" + n;
      row.appendChild(text("span", `trial ${n}: ` + Object.entries(t ? t.params : {}).map(([k, v]) => `${k}=${fmt(v)}`).join(" ")));
      if (page.can.approve) {
        const ok = text("button", "approve", "act approve"); ok.id = "approve-" + n;
        ok.onclick = () => act("approve", {trials: [n]});
        const reason = document.createElement("input"); reason.placeholder = "reason to reject"; reason.id = "reason-" + n;
        const no = text("button", "reject", "act reject"); no.id = "reject-" + n;
        no.onclick = () => act("reject", {trials: [n], reason: reason.value || "rejected from the dashboard"});
        row.append(ok, reason, no);
      }
      box.appendChild(row);
    });
  }

  function renderTrials() {
    const sel = $("state-filter"), states = [...new Set(snap.trials.map(t => t.state))].sort();
    const keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    states.forEach(s => { const o = text("option", s); o.value = s; sel.appendChild(o); });
    sel.value = states.includes(keep) ? keep : "";
    const cols = ["number", "state", "source", ...snap.parameters, ...snap.objectives.map(o => o.name), "failure"];
    const get = (t, c) => c in t ? t[c] : (c in t.params ? t.params[c] : t.values[c]);
    const rows = snap.trials.filter(t => !sel.value || t.state === sel.value).sort((x, y) => {
      const a = get(x, sortKey), b = get(y, sortKey);
      return (a == null) - (b == null) || (a < b ? -1 : a > b ? 1 : 0) * sortDir;
    });
    const table = document.createElement("table"); table.id = "trials-table";
    const head = table.insertRow();
    cols.forEach(c => { const th = text("th", c + (c === sortKey ? (sortDir > 0 ? " ▲" : " ▼") : "")); th.dataset.col = c;
      th.onclick = () => { sortDir = sortKey === c ? -sortDir : 1; sortKey = c; renderTrials(); }; head.appendChild(th); });
    rows.forEach(t => { const r = table.insertRow(); r.dataset.state = t.state; r.dataset.number = t.number;
      cols.forEach(c => r.appendChild(text("td", fmt(get(t, c))))); });
    clear($("trials")).appendChild(table);
  }

  let pending = null, sinceRead = [];
  live.rendered = () => {
    /* what the page shows, read back from the DOM (the differential test compares it with the store) */
    const trials = {}, q = $("quarantined");
    document.querySelectorAll("#trials-table tr[data-number]").forEach(r => { trials[r.dataset.number] = r.dataset.state; });
    const shown = [...document.querySelectorAll("#controls button[data-action]")].filter(b => !b.hidden).map(b => b.dataset.action).sort();
    const best = $("best").getAttribute("data-trial"), pareto = $("best").getAttribute("data-pareto");
    return {state: $("state").textContent, trials: trials, samples: JSON.parse($("samples").getAttribute("data-samples") || "{}"),
            best: best ? [+best, pareto ? pareto.split(" ").map(Number) : []] : null, buttons: shown,
            quarantined: q ? q.textContent.replace("out of service: ", "").split(", ").sort() : [], lastSeq: live.lastSeq};
  };
  function publish() {
    /* what the page shows, for tests and the differential check: the digest of the view it draws */
    live.view = snap; document.body.setAttribute("data-digest", JSON.stringify(LabloopView.digest(snap)));
  }
  function refresh() {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      try {
        const r = await fetch(`/api/campaigns/${encodeURIComponent(snap.campaign.name)}`, {credentials: "same-origin"});
        if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
        if (r.ok) {
          /* the fresh view, with the events that came after it was read applied on top (apply skips the rest) */
          const s = await r.json(), since = sinceRead;
          sinceRead = [];
          since.forEach(e => LabloopView.apply(s, e));
          delete s.stale;
          snap = s; live.refreshes++; render(); publish();
        }
      } catch (e) { /* the next event retries */ }
    }, REREAD_MS);
  }

  /* Live events come from the server in batches (?thin=1, labloop/web/thin.py): every campaign event, and the
     process monitors' readings thinned to at most ~10 per signal per second (a simulated deposition sends ~100).
     An event changes the page's data as it arrives; the page is drawn at the next animation frame, one DOM update
     per frame at most, none for readings alone (process streams are redrawn at most once a second). Trial events
     carry the trial, so plots and table update from the event itself; only what events do not carry (the
     campaign's state after a pause, say) is fetched again, at most every REFETCH_MS.
     window.labloopLive.arrivals notes, per event, when it arrived and when it was drawn: a campaign event once the
     DOM update of the frame that shows it is done, a reading once the stream chart that shows it is redrawn (one
     that no running step shows is never "drawn"). The latency benchmark reads it. */
  const REREAD_MS = 300;  /* after the event that asks for it: the runner commits what a pause changed just after
                             announcing it (labloop/control/stream.py REREAD_AFTER_S) */
  const STREAM_MS = 1000, REFETCH_MS = 500, STREAM_POINTS = 1500, DRAWN_POINTS = 400, ARRIVALS = 200000, FALLBACK_MS = 250;
  const TRIAL_EVENTS = new Set(["proposal", "approval", "trial_start", "measurement", "failure"]);
  let controlsDirty = false, drawQueued = false, fallback = null, later = null, unshown = [], unplotted = [];
  let streamsDirty = false, stepsMoved = false, trialsDirty = false, labDirty = false, structural = false, lastStreams = 0, lastFetch = 0;
  live.startSeq = live.lastSeq; live.thinned = 0;

  function onEvent(seq, kind, body) {
    if (seq != null) { if (seq <= live.lastSeq) return; live.lastSeq = seq; }
    live.received++;
    const arrival = {seq: seq, kind: kind, t: Date.now(), shown: null, caughtUp: !live.isLive};
    live.arrivals.push(arrival);
    if (live.arrivals.length > ARRIVALS) live.arrivals.shift();
    if (kind === "document" && body && body.name === "event") {
      arrival.reading = true;
      if (streamPoint(body.doc)) unplotted.push(arrival);
      return;
    }
    unshown.push([arrival, body]);
    if (kind === "document") return;
    const e = {seq: seq, kind: kind, body: body};
    LabloopView.apply(snap, e);
    sinceRead.push(e);
    if (sinceRead.length > ARRIVALS) sinceRead.shift();
    if (TRIAL_EVENTS.has(kind) || kind === "best") trialsDirty = labDirty = true;
    if (kind === "step_start" || kind === "step_end") labDirty = streamsDirty = stepsMoved = true;  // redraw the running steps' streams now
    if (snap.stale) { delete snap.stale; structural = true; }
    controlsDirty = true;
  }

  function schedule() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(draw);
    fallback = setTimeout(draw, FALLBACK_MS);  // a hidden tab gets no frames: it is drawn all the same, less often
  }

  function draw() {
    if (!drawQueued) return;
    drawQueued = false; clearTimeout(fallback);
    const now = Date.now(), busy = unshown.length > 0 || trialsDirty || labDirty;
    if (unshown.length) {
      /* the list names campaign events and run starts/ends; readings are plotted, not listed */
      const list = $("events"), items = document.createDocumentFragment();
      unshown.filter(([a, body]) => a.kind !== "document" || (body && body.name !== "descriptor")).slice(-30).reverse()
        .forEach(([a, body]) => items.appendChild(text("li", describe(a.seq, a.kind, body))));
      list.insertBefore(items, list.firstChild);
      while (list.childNodes.length > 200) list.removeChild(list.lastChild);
      list.setAttribute("data-last-seq", String(live.lastSeq));
    }
    if (trialsDirty) { trialsDirty = false; renderConvergence(); renderPareto(); renderApprovals(); renderTrials(); }
    if (labDirty) { labDirty = false; renderLab(); }
    if (controlsDirty) { controlsDirty = false; renderControls(); const st = $("state"); st.textContent = snap.campaign.state;
      st.className = "state s-" + snap.campaign.state; document.body.setAttribute("data-state", snap.campaign.state); }
    publish();
    const streamsDue = streamsDirty && (stepsMoved || now - lastStreams >= STREAM_MS);
    /* the stream charts are the heaviest part: never in the frame that shows campaign events, so those are
       painted as soon as they are applied; the charts follow in the next frame */
    if (streamsDue && !busy) { streamsDirty = stepsMoved = false; lastStreams = now; renderStreams(); }
    const drawn = Date.now();
    unshown.forEach(([a]) => { a.shown = drawn; });
    unshown = [];
    if (streamsDue && busy) schedule();
    if (structural && now - lastFetch >= REFETCH_MS) { structural = false; lastFetch = now; refresh(); }
    if ((streamsDirty || structural) && !later) {  // come back when the stream or the refetch is due
      const wait = Math.max(0, Math.min(streamsDirty ? lastStreams + STREAM_MS : Infinity,
                                        structural ? lastFetch + REFETCH_MS : Infinity) - now);
      later = setTimeout(() => { later = null; schedule(); }, wait);
    }
  }

  function describe(seq, kind, b) {
    /* one line per event, as `labloop watch` prints it: the trial, what happened, its value or message */
    b = b || {};
    const t = b.trial && typeof b.trial === "object" ? b.trial : null, n = t ? t.number : b.trial;
    const head = `${seq ?? ""} ` + (n != null ? `trial ${n} ` : "");
    const vals = v => Object.entries(v || {}).map(([k, x]) => `${k}=${fmt(x)}`).join(" ");
    if (kind === "document") {
      const d = b.doc || {};
      return b.name === "start" ? `${seq ?? ""} trial ${d.trial ?? "?"} run start: ${d.step || d.plan_name || ""}`
        : `${seq ?? ""} run ${b.name || ""}${d.exit_status ? ": " + d.exit_status : ""}`;
    }
    if (kind === "proposal" || kind === "trial_start" || kind === "approval") return `${head}${kind.replace("_", " ")}: ${vals(t && t.params)}`;
    if (kind === "measurement") return `${head}measured: ${vals(t && t.values)}`;
    if (kind === "failure") return `${head}${t ? t.state : "failed"}: ${t ? t.failure_reason || "" : ""}`;
    if (kind === "step_start") return `${head}step ${b.step} on ${b.device} (attempt ${b.attempt || 1})`;
    if (kind === "step_end") return `${head}step ${b.step} ${b.exit_status || ""}${b.location ? " → " + b.location : ""}${b.reason ? ": " + b.reason : ""}`;
    if (kind === "best") return `${head}best so far: ${b.objective} = ${fmt(b.value)}`;
    if (kind === "campaign_end") return `${head}campaign ended: ${b.state}${b.stop_reason ? " (" + b.stop_reason + ")" : ""}`;
    if (kind === "stopped") return `${head}stopped: ${b.reason || ""}`;
    if (kind === "paused" || kind === "resumed") return `${head}${kind}${b.reason ? ": " + b.reason : ""}`;
    return `${head}${kind}${b.message ? ": " + b.message : ""}`;
  }

  function streamPoint(doc) {
    /* a monitored signal is named after its device (chamber1_chamber_pressure): draw it under the step running
       there. True if the reading belongs to a running step (it is drawn with the next stream redraw). */
    if (!doc || !doc.data) return false;
    let placed = false;
    for (const [k, v] of Object.entries(doc.data)) {
      const target = typeof v === "number" && snap.running_steps.find(r => r.device && k.startsWith(r.device + "_"));
      if (!target) continue;
      const stream = target.stream = target.stream || [];
      stream.push({signal: k, t: doc.time, value: v});
      if (stream.length > STREAM_POINTS) stream.splice(0, stream.length - STREAM_POINTS);
      streamsDirty = placed = true;
    }
    return placed;
  }

  async function act(action, args) {
    const out = $("action-result"); out.textContent = action + "…"; out.className = "";
    try {
      const r = await fetch(`/api/campaigns/${encodeURIComponent(snap.campaign.name)}/actions/${action}`, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": page.csrf || ""}, body: JSON.stringify(args || {})});
      const j = await r.json();
      out.textContent = j.ok ? `${action}: ${j.result}` : `${action} refused: ${j.error.problem}${j.error.fix ? " (" + j.error.fix + ")" : ""}`;
      out.className = j.ok ? "ok" : "error";
    } catch (e) { out.textContent = action + " failed: " + e; out.className = "error"; }
    refresh();
  }

  document.querySelectorAll("#controls button[data-action]").forEach(b => {
    b.onclick = () => { if (b.dataset.action !== "estop" || confirm("Emergency stop every device of this campaign?")) act(b.dataset.action, {}); };
  });
  $("state-filter").onchange = renderTrials;
  render(); publish();
  function connect() {
    const src = new EventSource(`/api/campaigns/${encodeURIComponent(snap.campaign.name)}/events?thin=1&after=${live.lastSeq}`);
    src.addEventListener("batch", e => {
      const b = JSON.parse(e.data);
      b.events.forEach(([seq, kind, body]) => onEvent(seq, kind, body));
      live.thinned += b.thinned || 0;
      if (e.lastEventId && +e.lastEventId > live.lastSeq) live.lastSeq = +e.lastEventId;
      schedule();
    });
    src.addEventListener("live", () => { live.isLive = true; document.body.setAttribute("data-live", "1"); });
    src.onerror = () => {
      live.isLive = false; document.body.setAttribute("data-live", "0");
      /* EventSource retries a dropped connection by itself, but gives up on an answer that is not a stream (the
         daemon restarting, the session gone): then check the session (refresh goes to sign-in on a 401) and
         open a new stream after the last event the page has */
      if (src.readyState === EventSource.CLOSED) { refresh(); setTimeout(live.reconnect, 2000); }
    };
    live.source = src;
  }
  live.reconnect = () => { live.source.close(); live.isLive = false; connect(); };
  connect();
})();
