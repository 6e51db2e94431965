// jobtrail dashboard: live updates over Server-Sent Events, and the cancel/retry buttons.
"use strict";

const TERMINAL = new Set(["succeeded", "partial", "failed", "cancelled"]);
// Where the dashboard is mounted: "" at the root of its server, "/jobtrail" inside another app.
const ROOT = document.documentElement.dataset.root || "";

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function badge(status) {
  const span = document.createElement("span");
  span.className = "badge s-" + status;
  span.textContent = status;
  return span;
}

function itemsText(job) {
  if (job.items_total !== null) {
    let text = (job.items_done || 0) + "/" + job.items_total;
    if (job.items_failed) text += " (" + job.items_failed + " failed)";
    return text;
  }
  return job.items_done ? String(job.items_done) : "";
}

function paint(root, job) {
  // Answers can arrive out of order (a slow cancel response after the stream's newer
  // state): never paint an older state over a newer one.
  if (root.dataset.updated && Date.parse(job.updated_at) < Date.parse(root.dataset.updated)) return;
  root.dataset.updated = job.updated_at;
  root.dataset.status = job.status;
  const status = root.querySelector(".js-status");
  if (status) {
    status.replaceChildren(badge(job.status));
    if (job.stalled) { status.append(" ", Object.assign(badge("stalled"), { className: "badge s-stalled" })); }
  }
  const bar = root.querySelector(".js-progress .bar");
  if (bar) {
    bar.setAttribute("aria-valuenow", job.progress.toFixed(1));
    bar.firstElementChild.style.width = job.progress + "%";
  }
  const pct = root.querySelector(".js-progress .pct");
  if (pct) pct.textContent = (root.tagName === "TR" ? Math.round(job.progress) : job.progress.toFixed(1)) + "%";
  const set = (sel, text) => { const el = root.querySelector(sel); if (el) el.textContent = text; };
  set(".js-stage", job.stage || "");
  // A waiting job says why it waits (no worker consumes its queue, or its code waits).
  set(".js-message", (job.status === "waiting" && job.wait_reason) || job.message || "");
  set(".js-items", itemsText(job));
  set(".js-eta", job.eta_seconds === null ? "–" : fmtDuration(job.eta_seconds));
  if (job.started_at && root.tagName === "TR") set(".js-elapsed", job.started_at.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC"));
  if (job.completed_at) set(".js-completed", job.completed_at.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC"));
  if (job.duration_seconds !== null) set(".js-duration", fmtDuration(job.duration_seconds));
}

function newRow(job) {
  const row = document.getElementById("row-template").content.firstElementChild.cloneNode(true);
  row.dataset.job = job.id;
  const link = row.querySelector("a");
  link.href = ROOT + "/jobs/" + job.id;
  link.textContent = job.kind;
  row.querySelector(".mono").textContent = job.id.slice(0, 8);
  row.children[1].textContent = job.owner || "–";
  return row;
}

function liveOverview(table, source) {
  const body = table.tBodies[0];
  const empty = document.getElementById("no-active");
  const counter = document.getElementById("active-count");
  source.addEventListener("job", (event) => {
    const job = JSON.parse(event.data);
    let row = body.querySelector(`tr[data-job="${job.id}"]`);
    if (!row) {
      if (TERMINAL.has(job.status)) return;
      row = newRow(job);
      body.prepend(row);
    }
    paint(row, job);
    if (TERMINAL.has(job.status)) {
      row.classList.add("done");
      setTimeout(() => { row.remove(); refreshCount(); }, 8000);
    }
    refreshCount();
  });
  function refreshCount() {
    const live = body.querySelectorAll("tr:not(.done)").length;
    counter.textContent = live;
    empty.hidden = body.rows.length > 0;
  }
}

// Every number outside the table comes from a panel the server renders afresh: when the stream
// says jobs changed (at most every quarter second), and every 15 s for ages.
function livePanels(source) {
  let timer = null;
  const refresh = () => {
    timer = null;
    for (const panel of document.querySelectorAll("[data-live]")) {
      const id = panel.id;
      fetch(panel.dataset.live, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.text() : null))
        .then((html) => {
          if (!html) return;
          const template = document.createElement("template");
          template.innerHTML = html.trim();
          const fresh = template.content.firstElementChild;
          const current = document.getElementById(id);
          if (fresh && current) current.replaceWith(fresh);
        });
    }
  };
  const soon = () => { if (!timer) timer = setTimeout(refresh, 250); };
  if (source) {
    source.addEventListener("job", soon);
    source.addEventListener("open", soon); // what changed between the page and the stream
  }
  if (document.querySelector("[data-live]")) setInterval(refresh, 15000);
}

// Rows of a listing show their job's state as it changes.
function liveRows(table, source) {
  source.addEventListener("job", (event) => {
    const job = JSON.parse(event.data);
    const row = table.querySelector(`tr[data-job="${job.id}"]`);
    if (row) paint(row, job);
  });
}

function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}

function bulkSummary(answer) {
  const done = answer.done.length;
  const verb = answer.action === "cancel" ? "Cancelled" : "Queued retries of";
  let text = `${verb} ${plural(done, "job")}.`;
  const skipped = answer.skipped.length;
  if (skipped) {
    const reasons = [...new Set(answer.skipped.map((s) => s.reason))].slice(0, 3).join("; ");
    text += ` ${plural(skipped, "job")} left alone (${reasons}).`;
  }
  return text;
}

// Act on the selected jobs (or on every job that matches the filters), after a confirmation
// that says how many.
function bulkActions(section) {
  const table = document.getElementById("history");
  const all = document.getElementById("bulk-all");
  const count = document.getElementById("bulk-count");
  const result = document.getElementById("bulk-result");
  const buttons = section.querySelectorAll("button[data-action]");
  const picks = () => [...table.querySelectorAll("input.pick:checked")].map((box) => box.value);
  const chosen = () => (all && all.checked ? Number(section.dataset.total) : picks().length);
  function update() {
    const n = chosen();
    count.textContent = n ? plural(n, "job") + " selected" : "No job selected";
    for (const button of buttons) button.disabled = n === 0;
  }
  document.getElementById("select-page").addEventListener("change", (event) => {
    for (const box of table.querySelectorAll("input.pick")) box.checked = event.target.checked;
    update();
  });
  table.addEventListener("change", update);
  if (all) all.addEventListener("change", update);
  const verbs = { cancel: "Cancel", retry: "Retry", retry_failed_items: "Retry the failed items of" };
  for (const button of buttons) {
    button.addEventListener("click", async () => {
      const n = chosen();
      const action = button.dataset.action;
      if (!n || !window.confirm(`${verbs[action]} ${plural(n, "job")}?`)) return;
      const body = all && all.checked
        ? { action, filter: JSON.parse(section.dataset.filter) }
        : { action, job_ids: picks() };
      const response = await fetch(`${ROOT}/api/v1/jobs/bulk`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) {
        result.textContent = typeof answer.detail === "string" ? answer.detail : "The action was refused.";
        return;
      }
      result.textContent = bulkSummary(answer);
    });
  }
  update();
}

function appendEvents(article) {
  const after = article.dataset.lastEvent || "0";
  fetch(`${ROOT}/api/v1/jobs/${article.dataset.job}/events?after=${after}`, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((page) => {
      if (!page) return;
      const list = document.getElementById("timeline");
      for (const e of page.events) {
        const li = document.createElement("li");
        li.className = "ev-" + e.type;
        const time = document.createElement("time");
        time.textContent = e.at.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
        const strong = document.createElement("strong");
        strong.textContent = e.type;
        li.append(time, " ", strong, " " + (e.message || ""));
        if (e.actor) { const by = document.createElement("span"); by.className = "sub"; by.textContent = " by " + e.actor; li.append(by); }
        list.append(li);
      }
      article.dataset.lastEvent = String(page.next_after);
    });
}

function liveJob(article) {
  const buttons = {
    cancel: document.getElementById("cancel"),
    retry: document.getElementById("retry"),
    retryFailed: document.getElementById("retry-failed"),
  };
  const result = document.getElementById("action-result");
  function setButtons(job) {
    const terminal = TERMINAL.has(job.status);
    buttons.cancel.hidden = terminal;
    buttons.retry.hidden = !(job.status === "failed" || job.status === "partial" || job.status === "cancelled");
    buttons.retryFailed.hidden = buttons.retry.hidden || !job.items_failed;
  }
  if (article.dataset.terminal !== "true") {
    const source = new EventSource(`${ROOT}/api/v1/jobs/${article.dataset.job}/stream`, { withCredentials: true });
    source.addEventListener("job", (event) => {
      const job = JSON.parse(event.data);
      paint(article, job);
      setButtons(job);
      appendEvents(article);
      if (TERMINAL.has(job.status)) source.close();
    });
  }
  async function act(path, confirmText, done) {
    if (!window.confirm(confirmText)) return;
    const response = await fetch(path, { method: "POST", credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) { result.textContent = body.detail || "failed"; return; }
    done(body);
  }
  const id = article.dataset.job;
  buttons.cancel.addEventListener("click", () =>
    act(`${ROOT}/api/v1/jobs/${id}/cancel`, "Cancel this job?", (job) => {
      paint(article, job);
      if (article.dataset.updated === job.updated_at) setButtons(job);
      result.textContent = job.status === "cancelled" ? "Cancelled." : "Cancel requested; the job stops at its next checkpoint.";
      appendEvents(article);
    }));
  for (const [button, query] of [[buttons.retry, ""], [buttons.retryFailed, "?only_failed_items=true"]]) {
    button.addEventListener("click", () =>
      act(`${ROOT}/api/v1/jobs/${id}/retry${query}`, "Queue a retry of this job?", (job) => {
        result.replaceChildren("Retry queued: ");
        const link = document.createElement("a");
        link.href = ROOT + "/jobs/" + job.id;
        link.textContent = job.id.slice(0, 8);
        link.id = "retry-link";
        result.append(link);
        appendEvents(article);
      }));
  }
}


// The page's Content-Security-Policy allows no inline styles or handlers: bars get their
// width and selects their submit-on-change here.
function fillBars() {
  for (const bar of document.querySelectorAll(".bar[aria-valuenow]")) {
    bar.firstElementChild.style.width = bar.getAttribute("aria-valuenow") + "%";
  }
}

function autosubmit() {
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  fillBars();
  autosubmit();
  const url = document.body.dataset.stream;
  const source = url ? new EventSource(url, { withCredentials: true }) : null;
  livePanels(source);
  const overview = document.getElementById("active");
  if (overview && source) liveOverview(overview, source);
  const history = document.getElementById("history");
  if (history && source) liveRows(history, source);
  const bulk = document.getElementById("bulk");
  if (bulk) bulkActions(bulk);
  const article = document.getElementById("job");
  if (article) liveJob(article);
});
