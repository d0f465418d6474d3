// The queuebox dashboard: fills each page from the JSON API and polls it.
// Every value from the store is put in the page with textContent (text nodes), never as
// markup, so a job's arguments or error cannot add elements or run script.
"use strict";

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const BASE = meta("queuebox-base");
  const CSRF = meta("queuebox-csrf");
  const STATES = ["ready", "scheduled", "running", "failed", "cancelled", "completed"];
  const main = document.getElementById("main");
  const statusBox = document.getElementById("status");
  let info = null; // /api/meta: features, notes, whether this user may act

  // -- building the page ----------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const link = (path, text, attrs) => el("a", { href: BASE + path, ...(attrs || {}) }, text);
  const note = (text) => el("p", { class: "note" }, text);
  const section = (title, ...children) => el("section", {}, el("h2", {}, title), ...children);
  const table = (head, rows, attrs) =>
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        attrs || {},
        el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows),
      ),
    );

  function say(text, isError) {
    statusBox.className = isError ? "error" : "ok";
    statusBox.textContent = text;
  }

  // -- time -----------------------------------------------------------------------------

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(Math.abs(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function relative(iso, nowIso) {
    if (!iso || !nowIso) return "";
    const seconds = (new Date(iso) - new Date(nowIso)) / 1000;
    if (Math.abs(seconds) < 1) return "now";
    return seconds > 0 ? `in ${duration(seconds)}` : `${duration(seconds)} ago`;
  }

  const time = (iso, nowIso) =>
    el("time", { datetime: iso, title: relative(iso, nowIso) }, when(iso));

  // -- talking to the API ---------------------------------------------------------------

  async function getJSON(path) {
    const response = await fetch(BASE + path, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.error || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  async function post(path, body) {
    const response = await fetch(BASE + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
    return data;
  }

  // Runs an action, says how it went, and refreshes the page's data.
  async function act(label, path, body, refresh) {
    try {
      const result = await post(path, body);
      const outcome = result.outcome || `${result.changed} changed`;
      say(`${label}: ${outcome}`, !result.changed);
    } catch (error) {
      say(`${label} failed: ${error.message}`, true);
    }
    if (refresh) await refresh();
  }

  function button(text, onclick, attrs) {
    return el("button", { type: "button", onclick, ...(attrs || {}) }, text);
  }

  const canAct = () => info && info.can_act;

  function jobButtons(job, refresh) {
    if (!canAct()) return el("div", { class: "actions" });
    const a = job.actions || {
      retry: job.state !== "running" && job.state !== "scheduled",
      run_now: job.state === "scheduled",
      cancel: info.features.cancel && ["scheduled", "ready", "running"].includes(job.state),
      delete: true,
    };
    const path = (action) => `/api/jobs/${encodeURIComponent(job.id)}/${action}`;
    const buttons = [];
    if (a.retry) buttons.push(button("Retry", () => act(`Retry ${job.id}`, path("retry"), {}, refresh), { "data-action": "retry" }));
    if (a.run_now) buttons.push(button("Run now", () => act(`Run ${job.id} now`, path("run_now"), {}, refresh), { "data-action": "run_now" }));
    if (a.cancel)
      buttons.push(
        button("Cancel", () => {
          if (confirm(`Cancel job ${job.id} (${job.name})?`)) act(`Cancel ${job.id}`, path("cancel"), {}, refresh);
        }, { "data-action": "cancel" }),
      );
    if (a.delete)
      buttons.push(
        button("Delete", () => {
          if (confirm(`Delete job ${job.id} (${job.name})? This cannot be undone.`))
            act(`Delete ${job.id}`, path("delete"), {}, refresh);
        }, { "data-action": "delete", class: "danger" }),
      );
    return el("div", { class: "actions" }, buttons);
  }

  function notesFor(keys) {
    return keys.filter((key) => info.notes[key]).map((key) => note(info.notes[key]));
  }

  // -- pages ----------------------------------------------------------------------------

  const pages = {};

  pages.overview = (region) => {
    const selected = new Set();
    const stamp = () => Date.now().toString(36);
    return async function refresh() {
      const data = await getJSON("/api/overview");
      const pausable = info.features.pause && canAct();
      const cards = el(
        "div",
        { class: "cards" },
        card("Jobs waiting", data.queues.reduce((n, q) => n + q.ready + q.scheduled, 0)),
        card("Running", data.queues.reduce((n, q) => n + q.running, 0)),
        card("Failed", data.queues.reduce((n, q) => n + q.failed, 0)),
        data.workers ? card("Workers alive", data.workers.alive, `${data.workers.hosts} host(s), ${data.workers.lost} lost`, "workers-alive") : null,
        data.paused ? card("Paused queues", data.paused.length, data.paused.join(", ") || "none", "paused-count") : null,
        data.last_hour ? card("Finished, last hour", data.last_hour.finished, `${data.last_hour.failed + data.last_hour.retried} raised`) : null,
      );
      const rows = data.queues.map((q) =>
        el(
          "tr",
          { "data-queue": q.queue, class: q.paused ? "paused" : null },
          pausable
            ? el("td", {}, el("input", {
                type: "checkbox",
                "aria-label": `select ${q.queue}`,
                checked: selected.has(q.queue),
                onchange: (e) => (e.target.checked ? selected.add(q.queue) : selected.delete(q.queue)),
              }))
            : null,
          el("th", { scope: "row" }, link(`/jobs?queue=${encodeURIComponent(q.queue)}`, q.queue), q.paused ? el("span", { class: "badge" }, "paused") : null),
          STATES.map((s) =>
            el("td", { class: "num", "data-state": s }, q[s] ? link(`/jobs?queue=${encodeURIComponent(q.queue)}&state=${s}`, q[s]) : "0"),
          ),
          el("td", { class: "num" }, q.total),
          pausable
            ? el("td", {}, q.paused
                ? button("Resume", () => act(`Resume ${q.queue}`, `/api/queues/${encodeURIComponent(q.queue)}/resume`, {}, refresh), { "data-action": "resume" })
                : button("Pause", () => act(`Pause ${q.queue}`, `/api/queues/${encodeURIComponent(q.queue)}/pause`, {}, refresh), { "data-action": "pause" }))
            : null,
        ),
      );
      const head = [pausable ? "" : null, "Queue", ...STATES, "total", pausable ? "" : null].filter((h) => h !== null);
      const bulk = (action) => () => {
        const queues = [...selected];
        if (!queues.length) return say("Select queues first (the boxes on the left).", true);
        if (confirm(`${action === "pause" ? "Pause" : "Resume"} ${queues.length} queue(s): ${queues.join(", ")}?`))
          act(`${action} ${queues.length} queue(s)`, "/api/bulk/queues", { action, queues, confirm: true }, refresh);
      };
      const charts = data.history
        ? el(
            "div",
            { class: "charts" },
            el("figure", {}, el("img", { src: `${BASE}/charts/throughput.svg?t=${stamp()}`, alt: "jobs per minute over the last hour", width: 600, height: 180 }),
              el("figcaption", {}, "Jobs per minute, last hour: ", legend())),
            el("figure", {}, el("img", { src: `${BASE}/charts/failure-rate.svg?t=${stamp()}`, alt: "failure rate per minute over the last hour", width: 600, height: 180 }),
              el("figcaption", {}, "Failure rate (runs that raised, of those that ended), last hour")),
          )
        : null;
      region.replaceChildren(
        cards,
        section(
          "Queues",
          data.queues.length ? table(head, rows, { id: "queues" }) : note("No job is stored yet."),
          pausable && data.queues.length
            ? el("div", { class: "actions" }, button("Pause selected", bulk("pause"), { "data-action": "bulk-pause" }), button("Resume selected", bulk("resume"), { "data-action": "bulk-resume" }))
            : null,
        ),
        section("Last hour", charts, ...notesFor(["history"])),
        el("div", {}, ...notesFor(["workers", "pause", "cancel"])),
      );
    };
  };

  function card(title, value, detail, id) {
    return el("div", { class: "card", id }, el("div", { class: "card-title" }, title), el("div", { class: "card-value" }, value), detail ? el("div", { class: "card-detail" }, detail) : null);
  }

  function legend() {
    const colours = { succeeded: "#2e7d32", retried: "#ef8f00", failed: "#c62828", cancelled: "#757575" };
    return Object.entries(colours).map(([name, colour]) => el("span", { class: `swatch swatch-${name}` }, name, " "));
  }

  pages.jobs = (region) => {
    const params = new URLSearchParams(location.search);
    const filters = {};
    for (const key of ["queue", "state", "name", "text"]) if (params.get(key)) filters[key] = params.get(key);
    const cursor = params.get("cursor");
    const form = el(
      "form",
      { method: "get", action: `${BASE}/jobs`, class: "filters", role: "search" },
      field("Queue", el("input", { name: "queue", value: filters.queue || "", size: 12 })),
      field("State", el("select", { name: "state" }, el("option", { value: "" }, "any"), STATES.map((s) => el("option", { value: s, selected: filters.state === s }, s)))),
      field("Job name", el("input", { name: "name", value: filters.name || "", size: 16 })),
      field("Text in arguments or error", el("input", { name: "text", value: filters.text || "", size: 20 })),
      el("button", { type: "submit" }, "Filter"),
      link("/jobs", "Clear"),
    );
    main.insertBefore(form, region);
    const bulkBar = el("div", { class: "actions bulk" });
    main.insertBefore(bulkBar, region);

    async function bulk(action, label) {
      try {
        const count = await post("/api/bulk/jobs", { action, filters, dry_run: true });
        if (!count.matched) return say(`${label}: no job matches these filters.`, true);
        const more = count.more ? ` (the first ${count.matched}; run it again for the rest)` : "";
        if (!confirm(`${label}: ${count.matched} job(s) match${more}. Go ahead?`)) return;
        const result = await post("/api/bulk/jobs", { action, filters, confirm: true, limit: count.matched });
        say(`${label}: ${result.changed} of ${result.matched} job(s) changed`, false);
      } catch (error) {
        say(`${label} failed: ${error.message}`, true);
      }
      await refresh();
    }

    if (canAct()) {
      const buttons = [];
      if (filters.state !== "running" && filters.state !== "scheduled") buttons.push(button("Retry all matching", () => bulk("retry", "Retry all matching"), { "data-action": "bulk-retry" }));
      if (!filters.state || filters.state === "scheduled") buttons.push(button("Run all matching now", () => bulk("run_now", "Run all matching now"), { "data-action": "bulk-run_now" }));
      if (info.features.cancel) buttons.push(button("Cancel all matching", () => bulk("cancel", "Cancel all matching"), { "data-action": "bulk-cancel" }));
      buttons.push(button("Delete all matching", () => bulk("delete", "Delete all matching"), { "data-action": "bulk-delete", class: "danger" }));
      bulkBar.replaceChildren(el("span", { class: "hint" }, `Bulk, at most ${info.bulk_limit} at a time:`), ...buttons);
    }

    async function refresh() {
      const query = new URLSearchParams(filters);
      if (cursor) query.set("cursor", cursor);
      const data = await getJSON(`/api/jobs?${query}`);
      const rows = data.jobs.map((job) =>
        el(
          "tr",
          { "data-job-id": job.id, "data-state": job.state },
          el("td", {}, link(`/jobs/${encodeURIComponent(job.id)}`, job.id)),
          el("td", {}, job.name),
          el("td", {}, job.queue),
          el("td", {}, el("span", { class: `state state-${job.state}` }, job.state)),
          el("td", { class: "num" }, job.attempts),
          el("td", {}, time(job.run_at, data.now)),
          el("td", { class: "args" }, job.arguments, job.arguments_cut ? "…" : ""),
          el("td", { class: "error-line" }, job.unreadable ? `unreadable: ${job.unreadable}` : job.error || ""),
          el("td", {}, jobButtons(job, refresh)),
        ),
      );
      const next = new URLSearchParams(filters);
      if (data.next_cursor) next.set("cursor", data.next_cursor);
      // A store looks at a bounded number of jobs per page: a short page with a cursor
      // means the older jobs were not searched yet, not that none of them matches.
      const partial = data.next_cursor && data.jobs.length < data.limit;
      const empty = !data.next_cursor
        ? (cursor ? "No more jobs." : "No job matches these filters.")
        : "No match among the jobs searched so far; older jobs are not searched yet.";
      const more = partial && data.jobs.length
        ? [note(`${data.jobs.length} found among the jobs searched so far; older jobs are not searched yet.`)]
        : [];
      region.replaceChildren(
        ...notesFor(["search"]),
        data.jobs.length
          ? table(["id", "job", "queue", "state", "attempts", "run at", "arguments", "last error", ""], rows, { id: "jobs" })
          : note(empty),
        ...more,
        el("nav", { class: "pager", "aria-label": "pages" },
          cursor ? link(`/jobs?${new URLSearchParams(filters)}`, "« First page") : null,
          data.next_cursor
            ? link(`/jobs?${next}`, partial ? "Search older jobs »" : "Next page »", { rel: "next" })
            : null),
      );
    }
    return refresh;
  };

  function field(label, input) {
    return el("label", {}, el("span", {}, label), input);
  }

  pages.job = (region) => {
    const id = document.body.dataset.jobId;
    let gone = false;
    async function refresh() {
      if (gone) return;
      let data;
      try {
        data = await getJSON(`/api/jobs/${encodeURIComponent(id)}`);
      } catch (error) {
        if (error.status !== 404) throw error;
        gone = true;
        region.replaceChildren(note(`Job ${id} is not in the store (deleted, or it succeeded and was not kept).`), link("/jobs", "Back to the jobs"));
        return;
      }
      const job = data.job;
      const rows = [
        ["Queue", link(`/jobs?queue=${encodeURIComponent(job.queue)}`, job.queue)],
        ["State", el("span", { class: `state state-${job.state}`, id: "job-state" }, job.state)],
        ["Priority", job.priority],
        ["Attempts", el("span", { id: "job-attempts" }, job.attempts)],
        ["Run at", time(job.run_at, data.now), " ", relative(job.run_at, data.now)],
        ["Enqueued", time(job.created_at, data.now)],
        ["Last change", time(job.updated_at, data.now)],
        ["Locked by", job.locked_by || "—"],
        ["Lock expires", time(job.lock_expires_at, data.now)],
        ["Failed at", time(job.failed_at, data.now)],
        ["Completed at", time(job.completed_at, data.now)],
        ["Cancelled at", time(job.cancelled_at, data.now)],
        ["Unique key", job.unique_key || "—"],
        ["Limit key", job.limit_key || "—"],
      ].map(([label, ...value]) => el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, value)));
      const args = job.args === null && job.kwargs === null
        ? el("pre", { id: "job-arguments" }, job.handler)
        : el("pre", { id: "job-arguments" }, JSON.stringify({ args: job.args || [], kwargs: job.kwargs || {} }, null, 2));
      region.replaceChildren(
        el("h1", {}, el("span", { id: "job-name" }, job.name), " ", el("span", { class: "muted" }, `#${job.id}`)),
        jobButtons(job, refresh),
        ...(job.unreadable ? [note(`The store could not read this record: ${job.unreadable}`)] : []),
        el("div", { class: "table-wrap" }, el("table", { class: "fields" }, el("tbody", {}, rows))),
        section("Arguments", args),
        section("History", el("ol", { class: "history", id: "job-history" }, job.history.map((h) => el("li", {}, time(h.at, data.now), " ", h.event))),
          el("p", { class: "hint" }, "The store keeps the latest time of each step (the last claim, the last error), not one entry per attempt.")),
        section("Last error", job.last_error ? el("pre", { class: "traceback", id: "job-error" }, job.last_error) : note("No error recorded.")),
      );
    }
    return refresh;
  };

  pages.workers = (region) => async function refresh() {
    const data = await getJSON("/api/workers");
    if (data.workers === null) return region.replaceChildren(...notesFor(["workers"]));
    const alive = data.workers.filter((w) => !w.lost).length;
    const lost = data.workers.length - alive;
    const byHost = data.hosts.map((host) => {
      const rows = data.workers.filter((w) => w.host === host).map((w) =>
        el(
          "tr",
          { class: w.lost ? "lost" : null, "data-worker-id": w.id, "data-pid": w.pid },
          el("td", {}, w.id, w.lost ? el("span", { class: "badge danger" }, "lost") : null),
          el("td", { class: "num" }, w.pid),
          el("td", {}, w.queues === null ? "all queues" : w.queues.join(", ")),
          el("td", { class: "num" }, w.concurrency),
          el("td", {}, `up ${duration(w.uptime_seconds)}`),
          el("td", {}, `${duration(w.seconds_since_beat)} ago`),
          el("td", { class: "running" }, w.jobs.length
            ? el("ul", {}, w.jobs.map((j) => el("li", { "data-job-id": j.id }, link(`/jobs/${encodeURIComponent(j.id)}`, `#${j.id}`), ` ${j.name} on ${j.queue}, for ${duration(j.running_seconds)}`)))
            : "idle"),
          el("td", {}, w.version),
        ),
      );
      return section(host, table(["worker", "pid", "queues", "concurrency", "started", "last beat", "running now", "version"], rows, { class: "workers" }));
    });
    region.replaceChildren(
      el("p", { id: "workers-summary" }, `${alive} worker(s) alive on ${new Set(data.workers.filter((w) => !w.lost).map((w) => w.host)).size} host(s)${lost ? `, ${lost} lost (no heartbeat: the process died or froze; removed after a while)` : ""}.`),
      ...(byHost.length ? byHost : [note("No worker is registered: start one with `queuebox work`.")]),
    );
  };

  pages.recurring = (region) => async function refresh() {
    const data = await getJSON("/api/recurring");
    if (data.recurring === null) return region.replaceChildren(...notesFor(["recurring"]));
    const rows = data.recurring.map((r) =>
      el("tr", { "data-name": r.name },
        el("td", {}, link(`/jobs?name=${encodeURIComponent(r.name)}`, r.name)),
        el("td", {}, r.queue || "—"),
        el("td", {}, r.schedule || "—"),
        el("td", {}, time(r.last_tick, data.now)),
        el("td", {}, r.next_run ? [time(r.next_run, data.now), " ", relative(r.next_run, data.now)] : "—")),
    );
    region.replaceChildren(
      rows.length ? table(["job", "queue", "schedule", "last tick", "next run"], rows, { id: "recurring" }) : note("No recurring job has ticked yet."),
      data.registered ? null : note("No recurring job is registered in this process: start the dashboard with --app MODULE (or QUEUEBOX_APP) to see each one's schedule and next run."),
    );
  };

  // -- start ----------------------------------------------------------------------------

  async function start() {
    const page = document.body.dataset.page;
    main.replaceChildren();
    const region = el("div", { id: "region" });
    main.append(region);
    try {
      info = await getJSON("/api/meta");
    } catch (error) {
      return say(`Could not load the dashboard: ${error.message}`, true);
    }
    if (info.read_only) main.prepend(note("Read-only: actions are turned off."));
    const refresh = pages[page](region);
    let failing = false;
    async function tick() {
      if (document.visibilityState !== "hidden") {
        try {
          await refresh();
          if (failing) say("Connected again.", false);
          failing = false;
        } catch (error) {
          failing = true;
          say(`Could not refresh: ${error.message} (retrying)`, true);
        }
      }
      setTimeout(tick, info.poll_seconds * 1000);
    }
    tick();
  }

  start();
})();
