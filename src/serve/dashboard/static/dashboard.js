// nixpool dashboard: live updates over the coordinator's event stream (/api/events, SSE).
// Plain browser JavaScript, served as a file (the Content-Security-Policy refuses inline
// scripts). Every value from an event is written with textContent or setAttribute, never as
// markup. The rows it adds are clones of <template>s the server rendered, so a row's layout
// has one home: the server's renderers (src/serve/dashboard/*.ts).
"use strict";

(() => {
  const body = document.body;
  const page = body.dataset.page;
  const pageBuildId = body.dataset.buildId;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const RECENT_ROWS = 10;
  const LOG_LINES = 1000;
  // Nix colours its messages: the same pattern as src/core/build-log.ts stripAnsi.
  // eslint-disable-next-line no-control-regex
  const ANSI = /\x1b\[[0-9;]*m/g;
  let applied = 0;
  // An error page has nothing to keep current.
  if (!["overview", "build", "history"].includes(page)) return;

  /** Human-readable seconds, as src/core/duration.ts formatSeconds: 0.42s, 12.3s, 2m05s. */
  function formatSeconds(ms) {
    const s = ms / 1000;
    if (s < 10) return `${s.toFixed(2)}s`;
    if (s < 120) return `${s.toFixed(1)}s`;
    const m = Math.floor(s / 60);
    return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  }

  function none() {
    const span = document.createElement("span");
    span.className = "none";
    span.textContent = "-";
    return span;
  }

  /** A <time> as src/serve/dashboard/format.ts renderTime draws it. */
  function timeElement(iso) {
    const ms = iso ? Date.parse(iso) : NaN;
    if (Number.isNaN(ms)) return none();
    const full = new Date(ms).toISOString();
    const el = document.createElement("time");
    el.setAttribute("datetime", full);
    el.setAttribute("title", full);
    el.textContent = full.slice(11, 19);
    return el;
  }

  /** A duration as format.ts renderDuration draws it (ticking while `to` is absent). */
  function durationElement(from, to) {
    const start = from ? Date.parse(from) : NaN;
    if (Number.isNaN(start)) return none();
    const el = document.createElement("span");
    el.className = "duration";
    const end = to ? Date.parse(to) : NaN;
    if (Number.isNaN(end)) {
      el.dataset.since = new Date(start).toISOString();
      el.textContent = formatSeconds(Math.max(0, Date.now() - start));
    } else {
      el.textContent = formatSeconds(Math.max(0, end - start));
    }
    return el;
  }

  function statusElement(status) {
    const span = document.createElement("span");
    span.className = `status status-${status}`;
    span.textContent = status;
    return span;
  }

  function field(root, name) {
    return root.querySelector(`[data-field="${name}"]`);
  }

  function setField(root, name, ...nodes) {
    const el = field(root, name);
    if (el) el.replaceChildren(...nodes);
  }

  function cloneTemplate(id) {
    const template = document.getElementById(id);
    return template ? template.content.firstElementChild.cloneNode(true) : null;
  }

  /** The empty-table row comes and goes with the table's rows. */
  function fixEmpty(tbody) {
    const rows = tbody.querySelectorAll("tr:not(.empty)").length;
    const empty = tbody.querySelector("tr.empty");
    if (rows > 0 && empty) empty.remove();
    if (rows === 0 && !empty) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = tbody.closest("table").querySelectorAll("thead th").length;
      td.textContent = tbody.dataset.empty || "";
      tr.append(td);
      tbody.append(tr);
    }
  }

  function setCount(name, value) {
    for (const el of document.querySelectorAll(`[data-count="${name}"]`)) el.textContent = String(value);
  }

  /** Bytes as src/serve/dashboard/format.ts formatSize writes them. */
  function formatSize(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = n;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
  }

  /** The binary cache's numbers (a `cache` event): the counts and the most requested paths. */
  function cacheEvent(s) {
    if (!s || typeof s !== "object") return;
    setCount("cache-servable", s.servable);
    setCount("cache-hits", s.narinfoHits);
    setCount("cache-misses", s.narinfoMisses);
    setCount("cache-requests", s.narinfoRequests);
    setCount("cache-nars", s.narsServed);
    setCount("cache-bytes", formatSize(s.bytesServed));
    for (const el of document.querySelectorAll('[data-count="cache-bytes"]'))
      el.setAttribute("title", `${s.bytesServed} bytes`);
    setCount("cache-cut", s.narsCut);
    setCount("cache-resumed", s.rangeRequests);
    const tbody = document.getElementById("cache-top");
    if (!tbody || !Array.isArray(s.topPaths)) return;
    const rows = [];
    for (const p of s.topPaths) {
      const tr = cloneTemplate("cache-top-row");
      if (!tr) return;
      const name = field(tr, "path");
      name.textContent = String(p.path).slice(44) || String(p.path);
      name.setAttribute("title", String(p.path));
      field(tr, "nars").textContent = String(p.nars);
      field(tr, "bytes").textContent = formatSize(p.bytes);
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
    fixEmpty(tbody);
  }

  function progressText(c) {
    return `${c.done}/${c.total}${c.failed > 0 ? `, ${c.failed} failed` : ""}`;
  }

  /** Writes a BuildSummary into a row rendered by build-rows.ts renderBuildRow. */
  function fillBuildRow(tr, b) {
    tr.dataset.buildId = b.id;
    tr.dataset.status = b.status;
    const link = field(tr, "id");
    link.textContent = b.id;
    link.setAttribute("href", `/builds/${encodeURIComponent(b.id)}`);
    field(tr, "label").textContent = b.label;
    field(tr, "client").textContent = b.client;
    setField(tr, "status", statusElement(b.status));
    const bar = field(tr, "progress");
    bar.max = Math.max(1, b.counts.total);
    bar.value = b.counts.done;
    field(tr, "progress-text").textContent = progressText(b.counts);
    setField(tr, "submitted", timeElement(b.submittedAt));
    setField(tr, "wait", durationElement(b.submittedAt, b.startedAt || b.finishedAt));
    setField(tr, "duration", b.startedAt ? durationElement(b.startedAt, b.finishedAt) : none());
  }

  function findBuildRow(id) {
    for (const tr of document.querySelectorAll("tr[data-build-id]")) {
      if (tr.dataset.buildId === id && !tr.closest("template")) return tr;
    }
    return null;
  }

  /** The overview: a build moves from the queue to running to finished lately. */
  function overviewBuild(b) {
    const target = document.getElementById(
      FINISHED.includes(b.status)
        ? "recent-builds"
        : b.status === "running"
          ? "running-builds"
          : "queued-builds",
    );
    if (!target) return;
    let tr = findBuildRow(b.id);
    if (!tr) tr = cloneTemplate("build-row-template");
    if (!tr) return;
    fillBuildRow(tr, b);
    const from = tr.parentElement;
    if (from !== target) {
      if (target.id === "recent-builds") target.prepend(tr);
      else target.append(tr);
      if (from) fixEmpty(from);
    }
    fixEmpty(target);
    const recent = document.getElementById("recent-builds");
    const old = recent ? recent.querySelectorAll("tr:not(.empty)") : [];
    for (let i = RECENT_ROWS; i < old.length; i++) old[i].remove();
    for (const [name, id] of [
      ["queued", "queued-builds"],
      ["running", "running-builds"],
    ]) {
      const tbody = document.getElementById(id);
      if (tbody) setCount(name, tbody.querySelectorAll("tr:not(.empty)").length);
    }
  }

  /** History: rows update in place; a new build joins the top when the filter shows it. */
  function historyBuild(b) {
    const tbody = document.getElementById("history-builds");
    if (!tbody) return;
    let tr = findBuildRow(b.id);
    if (!tr) {
      const wanted = new URLSearchParams(location.search).get("status");
      if (wanted && wanted !== b.status) return;
      tr = cloneTemplate("build-row-template");
      if (!tr) return;
      tbody.prepend(tr);
    }
    fillBuildRow(tr, b);
    fixEmpty(tbody);
  }

  /** Builders on the overview: health, slots, what runs where, and the totals above. */
  function builderEvent(v) {
    const tr = [...document.querySelectorAll("tr[data-builder]")].find((r) => r.dataset.builder === v.name);
    if (!tr) return;
    const health = document.createElement("span");
    health.className = `health health-${v.health}`;
    health.textContent = v.health;
    const nodes = [health];
    if (v.health !== "up") {
      health.title = [v.lastError, v.nextProbeAt ? `next probe ${v.nextProbeAt}` : undefined]
        .filter(Boolean)
        .join("; ");
      if (v.lastError) {
        const div = document.createElement("div");
        div.className = "error";
        div.textContent = v.lastError;
        nodes.push(div);
      }
    }
    setField(tr, "health", ...nodes);
    const meter = field(tr, "slots-meter");
    if (meter) {
      meter.max = Math.max(1, v.slots);
      meter.value = v.inUse;
    }
    const slotsText = field(tr, "slots-text");
    const elsewhere = v.inUseElsewhere ?? 0;
    if (slotsText)
      slotsText.textContent = `${v.inUse}/${v.slots}${elsewhere > 0 ? ` (+${elsewhere} by other coordinators)` : ""}`;
    const speed = field(tr, "speed");
    if (speed) speed.textContent = String(v.speedFactor);
    const trust = field(tr, "trust");
    if (trust) trust.textContent = v.trust;
    if (v.current.length === 0) {
      const idle = document.createElement("span");
      idle.className = "none";
      idle.textContent = "idle";
      setField(tr, "current", idle);
    } else {
      const ul = document.createElement("ul");
      ul.className = "current";
      for (const c of v.current) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = `/builds/${encodeURIComponent(c.buildId)}`;
        a.title = c.drv;
        a.textContent = c.name;
        li.append(a);
        ul.append(li);
      }
      setField(tr, "current", ul);
    }
    let inUse = 0;
    for (const m of document.querySelectorAll('[data-field="slots-meter"]')) inUse += Number(m.value);
    setCount("slots-in-use", inUse);
    setCount("builders-up", document.querySelectorAll("#builders .health-up").length);
  }

  /** The build page's facts: status, counts, times; a finished build gets its timeline. */
  function buildPageBuild(b) {
    const status = document.getElementById("build-status");
    if (status) status.replaceChildren(statusElement(b.status));
    for (const key of ["total", "done", "running", "queued", "failed"]) {
      const el = document.querySelector(`[data-build-count="${key}"]`);
      if (el) el.textContent = String(b.counts[key]);
    }
    const bar = document.getElementById("build-progress");
    if (bar) {
      bar.max = Math.max(1, b.counts.total);
      bar.value = b.counts.done;
      bar.title = progressText(b.counts);
    }
    const started = document.getElementById("build-started");
    if (started) started.replaceChildren(timeElement(b.startedAt));
    const finished = document.getElementById("build-finished");
    if (finished) finished.replaceChildren(timeElement(b.finishedAt));
    const took = document.getElementById("build-duration");
    if (took) took.replaceChildren(b.startedAt ? durationElement(b.startedAt, b.finishedAt) : none());
    if (FINISHED.includes(b.status)) void loadTimeline(b.id);
  }

  /**
   * Fetches the finished build's timeline box (routes.ts: always 200, the chart or why there is
   * none) and shows it, replacing a chart drawn while it ran; tries again for a few seconds while
   * the chart is not there yet.
   */
  async function loadTimeline(id, triesLeft = 10) {
    const box = document.getElementById("timeline");
    if (!box) return;
    const res = await fetch(`/builds/${encodeURIComponent(id)}/timeline`, { credentials: "same-origin" });
    if (!res.ok) return;
    // Parsed as an inert document (nothing in it runs), then moved in.
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    if (doc.body.querySelector("svg"))
      box.replaceChildren(...[...doc.body.childNodes].map((n) => document.importNode(n, true)));
    else if (triesLeft > 0) setTimeout(() => void loadTimeline(id, triesLeft - 1), 1000);
  }

  function findByData(selector, key, value) {
    for (const el of document.querySelectorAll(selector)) {
      if (el.dataset[key] === value && !el.closest("template")) return el;
    }
    return null;
  }

  /** A derivation row on the build page (rendered by build-page.ts renderDerivationRow). */
  function derivationEvent(d) {
    const tbody = document.getElementById("derivations");
    if (!tbody) return;
    let tr = findByData("tr[data-drv]", "drv", d.drv);
    if (!tr) {
      tr = cloneTemplate("derivation-row-template");
      if (!tr) return;
      tr.dataset.drv = d.drv;
      const link = tr.querySelector(".name a");
      link.textContent = d.name;
      link.title = d.drv;
      link.setAttribute(
        "href",
        `/builds/${encodeURIComponent(pageBuildId)}/log?drv=${encodeURIComponent(d.drv)}`,
      );
      tr.querySelector(".drv code").textContent = d.drv;
      tbody.append(tr);
    }
    tr.dataset.status = d.status;
    const builder = document.createTextNode(d.builder || "");
    setField(tr, "builder", d.builder ? builder : none());
    const statusNodes = [statusElement(d.status)];
    if (d.error) {
      const div = document.createElement("div");
      div.className = "error";
      div.textContent = d.error;
      statusNodes.push(div);
    }
    setField(tr, "status", ...statusNodes);
    setField(tr, "started", timeElement(d.startedAt));
    setField(tr, "finished", timeElement(d.finishedAt));
    setField(tr, "duration", durationElement(d.startedAt, d.finishedAt));
    field(tr, "attempts").textContent = String(d.attempts);
  }

  /** A derivation's log pane, added from the template for its first line. */
  function logPane(drv) {
    const logs = document.getElementById("logs");
    if (!logs) return null;
    let pane = findByData("section[data-log-drv]", "logDrv", drv);
    if (pane) return pane;
    pane = cloneTemplate("log-pane-template");
    if (!pane) return null;
    pane.dataset.logDrv = drv;
    const row = findByData("tr[data-drv]", "drv", drv);
    const name = row
      ? row.querySelector(".name a").textContent
      : drv.replace(/^.*?-/, "").replace(/\.drv$/, "");
    const link = pane.querySelector("h3 a");
    link.textContent = name;
    link.title = drv;
    link.setAttribute(
      "href",
      `/builds/${encodeURIComponent(pageBuildId)}/log?drv=${encodeURIComponent(drv)}`,
    );
    const placeholder = document.getElementById("no-logs");
    if (placeholder) placeholder.remove();
    logs.append(pane);
    return pane;
  }

  function cleanLine(line) {
    return line.replace(ANSI, "").replace(/\r$/, "");
  }

  /** The lines a derivation's pane shows now. */
  function paneLines(drv) {
    const pane = findByData("section[data-log-drv]", "logDrv", drv);
    if (!pane) return [];
    const lines = pane.querySelector("pre").textContent.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    return lines;
  }

  /** A log line joins its derivation's pane, which keeps its last LOG_LINES lines. */
  function logEvent(e) {
    const pane = logPane(e.drv);
    if (!pane) return;
    const pre = pane.querySelector("pre");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(document.createTextNode(`${cleanLine(e.line)}\n`));
    while (pre.childNodes.length > LOG_LINES) pre.firstChild.remove();
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  /**
   * After the page takes a fresh copy (resync below), the lines sent between the stream's
   * opening and the copy arrive although the copy shows them already. Per derivation, arriving
   * lines are held while they repeat the copy's lines in order, dropped once they reach its last
   * line, and shown as soon as they differ from it (or after MATCH_MS).
   */
  const MATCH_MS = 3000;
  const matchers = new Map();

  function startMatching() {
    for (const m of matchers.values()) clearTimeout(m.timer);
    matchers.clear();
    for (const pane of document.querySelectorAll("#logs section[data-log-drv]")) {
      const drv = pane.dataset.logDrv;
      const shown = paneLines(drv);
      if (shown.length === 0) continue;
      matchers.set(drv, {
        shown,
        held: [],
        timer: setTimeout(() => finishMatching(drv, Infinity), MATCH_MS),
      });
    }
  }

  /** Ends a derivation's matching, showing the last `keep` lines held. */
  function finishMatching(drv, keep) {
    const m = matchers.get(drv);
    if (!m) return;
    matchers.delete(drv);
    clearTimeout(m.timer);
    for (const e of m.held.slice(Math.max(0, m.held.length - keep))) logEvent(e);
  }

  const sameRun = (held, shown, at) => held.every((line, i) => line === shown[at + i]);

  function logLine(e) {
    const m = matchers.get(e.drv);
    if (!m) return logEvent(e);
    m.held.push(e);
    const held = m.held.map((x) => cleanLine(x.line));
    const { shown } = m;
    const end = shown.length - held.length;
    if (end >= 0 && sameRun(held, shown, end)) return finishMatching(e.drv, 0);
    for (let at = 0; at < end; at++) if (sameRun(held, shown, at)) return; // may still reach the end
    // New lines: skip only a start that ends the copy.
    let k = held.length - 1;
    while (k > 0 && !sameRun(held.slice(0, k), shown, shown.length - k)) k--;
    finishMatching(e.drv, held.length - k);
  }

  function apply(e) {
    if (!e || typeof e !== "object") return;
    if (page === "overview") {
      if (e.type === "build") overviewBuild(e.build);
      else if (e.type === "builder") builderEvent(e.builder);
      else if (e.type === "cache") cacheEvent(e.cache);
    } else if (page === "history") {
      if (e.type === "build") historyBuild(e.build);
    } else if (page === "build") {
      if (e.type === "build" && e.build.id === pageBuildId) buildPageBuild(e.build);
      else if (e.type === "derivation" && e.buildId === pageBuildId) derivationEvent(e.derivation);
      else if (e.type === "log" && e.buildId === pageBuildId) logLine(e);
    }
    applied += 1;
    body.dataset.eventsApplied = String(applied);
  }

  const live = document.getElementById("live");
  function setLive(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.textContent = text;
  }

  /**
   * Events sent before the stream was open are lost (at page load, and while reconnecting), so
   * on every open the page takes a fresh copy of its content from the server and then applies,
   * in order, the events that arrived meanwhile: the newest state wins. Log lines the copy
   * holds already are not shown twice (startMatching above).
   */
  let buffered = null;
  async function resync() {
    buffered = [];
    setLive("syncing", "syncing…");
    try {
      const res = await fetch(location.href, {
        credentials: "same-origin",
        headers: { accept: "text/html" },
      });
      const fresh = res.ok
        ? new DOMParser().parseFromString(await res.text(), "text/html").querySelector("main")
        : null;
      const main = document.querySelector("main");
      if (fresh && main)
        main.replaceChildren(...[...fresh.childNodes].map((n) => document.importNode(n, true)));
    } catch {
      // The events alone still update the page.
    }
    startMatching();
    const events = buffered;
    buffered = null;
    for (const e of events) apply(e);
    if (source.readyState === EventSource.OPEN) setLive("live", "live");
  }

  function onMessage(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return; // not an event of ours (a comment or keep-alive)
    }
    if (buffered) buffered.push(event);
    else apply(event);
  }

  const source = new EventSource("/api/events");
  source.onopen = () => void resync();
  source.onerror = () => setLive("reconnecting", "reconnecting…");
  // Unnamed messages, and the same events when the stream names them by type.
  source.onmessage = onMessage;
  for (const type of ["build", "derivation", "log", "builder", "cache"])
    source.addEventListener(type, onMessage);
  addEventListener("pagehide", () => source.close());

  // Running durations keep counting between events.
  setInterval(() => {
    for (const el of document.querySelectorAll("[data-since]")) {
      const since = Date.parse(el.dataset.since);
      if (!Number.isNaN(since)) el.textContent = formatSeconds(Math.max(0, Date.now() - since));
    }
  }, 1000);
})();
