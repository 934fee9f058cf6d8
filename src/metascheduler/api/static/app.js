// The metascheduler dashboard: plain DOM over the JSON API, no build step, no dependencies.
// Every value from the API is inserted with textContent: specs, labels and reasons come from
// the chain and are untrusted.
"use strict";

const STATES = ["PENDING", "META_SCHEDULED", "SCHEDULED", "RUNNING", "CANCELLED", "FINISHED",
                "FAILED", "OUT_OF_CREDITS"];
const PAGE = 25;
const REFRESH_MS = 3000;
const UNITS = 1000000;  // credit units per credit (6 decimals)

const view = { offset: 0, filters: {}, selected: null, total: 0, account: "" };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function credits(units) {
  if (units === null || units === undefined) return "–";
  const v = Number(units) / UNITS;
  return v.toLocaleString(undefined, { maximumFractionDigits: 6 });
}

function short(addr) {
  return addr ? addr.slice(0, 6) + "…" + addr.slice(-4) : "–";
}

function addrCell(addr) {
  return el("td", { class: "addr", title: addr || "" }, short(addr));
}

function when(ts) {
  return ts ? new Date(ts * 1000).toLocaleString() : "–";
}

function ago(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago`
                                          : `${Math.round(s / 3600)} h ago`;
}

function statusBadge(name) {
  return el("span", { class: `status s-${name}` }, name);
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = body.detail;
    // 422s carry a list of {loc, msg}; everything else a sentence.
    const words = typeof d === "string" ? d
      : Array.isArray(d) ? d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ")
      : `${r.status} ${r.statusText} on ${url}`;
    throw new Error(words);
  }
  return body;
}

// ---------------------------------------------------------------- health and stats

async function loadHealth() {
  const pill = $("health");
  try {
    const r = await fetch("/api/health");
    const h = await r.json();
    pill.className = `pill ${h.status}`;
    const lag = h.lag_blocks === null ? "" : `, lag ${h.lag_blocks} blocks`;
    pill.textContent = h.cursor_block === null ? `${h.status}: nothing ingested`
                                               : `${h.status}: block ${h.cursor_block}${lag}`;
    pill.title = h.detail || "store reachable";
  } catch (e) {
    pill.className = "pill down";
    pill.textContent = "API unreachable";
  }
}

function card(label, value, id) {
  return el("div", { class: "card", id: id || "" }, el("div", { class: "v" }, value),
            el("div", { class: "k" }, label));
}

async function loadStats() {
  const s = await getJSON("/api/stats");
  const by = s.jobs_by_status;
  const live = by.PENDING + by.META_SCHEDULED + by.SCHEDULED;
  $("cards").replaceChildren(
    card("jobs", s.jobs_total, "card-jobs"),
    card("waiting / placed", live),
    card("running", by.RUNNING, "card-running"),
    card("finished", by.FINISHED),
    card("failed / cancelled / out of credits", by.FAILED + by.CANCELLED + by.OUT_OF_CREDITS),
    card("credits escrowed", credits(s.credits.escrowed)),
    card("credits spent", credits(s.credits.spent), "card-spent"),
    card("refunded", credits(s.credits.refunded)),
    card("fees", credits(s.credits.fees)),
    card("providers alive", `${s.providers_alive} / ${s.providers_total}`, "card-alive"),
  );
  const box = $("unplaceable");
  box.replaceChildren();
  if (s.unplaceable.length) {
    box.append(el("h2", {}, `Unplaceable jobs (${s.unplaceable.length})`),
               el("ul", {}, ...s.unplaceable.map((u) =>
                 el("li", {}, `job ${u.job_id}: ${u.reason}`))));
  }
}

// ---------------------------------------------------------------- jobs

function jobsURL() {
  const q = new URLSearchParams({ limit: PAGE, offset: view.offset });
  for (const [k, v] of Object.entries(view.filters)) if (v) q.append(k, v);
  return `/api/jobs?${q}`;
}

async function loadJobs() {
  const err = $("jobs-error");
  let page;
  try {
    page = await getJSON(jobsURL());
    err.hidden = true;
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
    return;
  }
  view.total = page.total;
  $("jobs-total").textContent = `(${page.total})`;
  $("jobs-body").replaceChildren(...page.items.map(jobRow));
  if (!page.items.length) {
    $("jobs-body").append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "no jobs")));
  }
  const last = Math.min(view.offset + page.items.length, page.total);
  $("page-info").textContent = page.total ? `${view.offset + 1}–${last} of ${page.total}` : "";
  $("prev").disabled = view.offset === 0;
  $("next").disabled = last >= page.total;
}

function jobRow(j) {
  const spent = j.paid === null ? null : Number(j.paid) + Number(j.fee);
  const row = el("tr", { dataset: { jobId: j.job_id } },
    el("td", { class: "num" }, j.job_id),
    el("td", { class: "state" }, statusBadge(j.status)),
    addrCell(j.customer),
    addrCell(j.provider),
    el("td", { class: "num" }, j.cpus),
    el("td", { class: "num" }, credits(j.price_per_minute)),
    el("td", { class: "num" }, credits(j.escrow)),
    el("td", { class: "num" }, credits(spent)),
    el("td", {}, when(j.requested_at)),
  );
  if (view.selected === j.job_id) row.classList.add("selected");
  row.addEventListener("click", () => selectJob(j.job_id));
  return row;
}

// ---------------------------------------------------------------- one job

async function selectJob(id) {
  view.selected = id;
  for (const tr of $("jobs-body").children) {
    tr.classList.toggle("selected", tr.dataset.jobId === String(id));
  }
  await loadJob();
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

function fact(k, v) {
  return [el("dt", {}, k), el("dd", {}, v)];
}

async function loadJob() {
  if (view.selected === null) return;
  let j;
  try {
    j = await getJSON(`/api/jobs/${view.selected}`);
  } catch (e) {
    $("job-hint").textContent = e.message;
    $("job-hint").hidden = false;
    return;
  }
  $("job-title").replaceChildren(`Job ${j.job_id} `, statusBadge(j.status));
  $("job-hint").hidden = true;
  const spent = j.paid === null ? null : Number(j.paid) + Number(j.fee);
  const facts = $("job-facts");
  facts.replaceChildren(
    ...fact("customer", j.customer),
    ...fact("provider", j.provider || "–"),
    ...fact("resources", `${j.cpus} CPUs, ${j.gpus} GPUs, ${j.mem_mb} MB`),
    ...fact("price", j.price_per_minute === null ? "not placed"
                                                  : `${credits(j.price_per_minute)} / min`),
    ...fact("escrow", credits(j.escrow)),
    ...fact("spent", credits(spent)),
    ...fact("exit code", j.exit_code === null ? "–" : j.exit_code),
  );
  if (j.unplaceable_reason) facts.append(...fact("unplaceable", j.unplaceable_reason));
  // Sizes and state only: the content is encrypted to the customer, who reads it with the CLI.
  try {
    const r = await getJSON(`/api/jobs/${j.job_id}/results`);
    const log = r.log.chunks ? `${r.log.chunks} chunks, ${bytes(r.log.bytes)}`
                             + (r.log.final ? ", ended" : ", streaming") : "none yet";
    const out = r.outputs ? `${r.outputs.state}, ${bytes(r.outputs.size)}` : "none yet";
    facts.append(...fact("log", log), ...fact("outputs", out));
  } catch (e) {
    facts.append(...fact("results", e.message));
  }
  facts.hidden = false;
  $("timeline").replaceChildren(...j.timeline.map((t) => {
    const moved = Object.entries(t.credits).map(([k, v]) => `${k} ${credits(v)}`).join(", ");
    const change = t.to_status ? ` ${t.from_status ? t.from_status + " → " : ""}${t.to_status}`
                               : "";
    return el("li", { dataset: { event: t.event } },
      el("div", { class: "when" }, `block ${t.block_number} · ${when(t.block_time)}`),
      el("div", {}, el("span", { class: "ev" }, t.event), change),
      el("div", {}, t.detail),
      moved ? el("div", { class: "credits" }, moved) : null);
  }));
}

// ---------------------------------------------------------------- providers

function providerRow(p) {
  const hw = p.hardware;
  const pct = hw.cpus ? Math.min(100, (100 * p.load.cpus_reserved) / hw.cpus) : 0;
  const hb = p.heartbeat;
  return el("tr", { dataset: { provider: p.address } },
    addrCell(p.address),
    el("td", {}, p.status),
    el("td", { title: hb ? `free ${hb.free_cpus} CPUs, backend ${hb.backend || "?"}` : "" },
       el("span", { class: p.alive ? "dot alive" : "dot" }),
       p.alive ? `alive, ${ago(p.last_heartbeat_at)}` : `silent (${ago(p.last_heartbeat_at)})`),
    el("td", { class: "num" }, p.load.jobs_placed),
    el("td", { class: "num" }, p.load.jobs_running),
    el("td", {}, el("span", { class: "bar" }, el("span", { style: `width:${pct}%` })),
       `${p.load.cpus_in_use} / ${p.load.cpus_reserved} / ${hw.cpus}`),
    el("td", { class: "num" }, `${p.load.gpus_reserved} / ${hw.gpus}`),
    el("td", { class: "num" }, `${p.load.mem_mb_reserved} / ${hw.mem_mb} MB`),
    el("td", {}, `${credits(p.prices.cpu)}, ${credits(p.prices.gpu)}, ${credits(p.prices.gb)}`),
    el("td", {}, p.labels.join(", ") || "–"),
  );
}

async function loadProviders() {
  const ps = await getJSON("/api/providers");
  $("providers-body").replaceChildren(...ps.map(providerRow));
  if (!ps.length) {
    $("providers-body").append(
      el("tr", {}, el("td", { colspan: 10, class: "muted" }, "no providers registered")));
  }
}

// ---------------------------------------------------------------- account statement

async function loadAccount() {
  if (!view.account) return;
  let a;
  try {
    a = await getJSON(`/api/accounts/${encodeURIComponent(view.account)}`);
  } catch (e) {
    $("account-error").textContent = e.message;
    $("account-error").hidden = false;
    // No statement of the previous address left under this one's error.
    $("account-title").textContent = "";
    $("account-summary").textContent = "";
    $("account-body").replaceChildren();
    return;
  }
  $("account-error").hidden = true;
  $("account-title").textContent = a.account;
  const totals = Object.entries(a.totals).map(([k, v]) => `${k} ${credits(Math.abs(v))}`);
  $("account-summary").textContent =
    `balance ${credits(a.balance)} credits, ${credits(a.in_escrow)} in live jobs' escrow; ` +
    (totals.length ? totals.join(", ") : "no movements");
  // Newest first, as the jobs are.
  $("account-body").replaceChildren(...a.movements.slice().reverse().map((m) =>
    el("tr", { dataset: { kind: m.kind } },
      el("td", { class: "num" }, m.block_number),
      el("td", {}, when(m.block_time)),
      el("td", {}, m.kind),
      el("td", { class: "num" }, m.job_id === null ? "–" : m.job_id),
      el("td", { class: "num" }, (m.amount < 0 ? "−" : "+") + credits(Math.abs(m.amount))),
      el("td", { class: "num" }, credits(m.balance)))));
}

// ---------------------------------------------------------------- wiring

async function refresh() {
  const results = await Promise.allSettled(
    [loadHealth(), loadStats(), loadJobs(), loadProviders(), loadJob(), loadAccount()]);
  const failed = results.filter((r) => r.status === "rejected");
  $("updated").textContent = failed.length ? `refresh failed: ${failed[0].reason.message}`
                                           : `updated ${new Date().toLocaleTimeString()}`;
}

function init() {
  const sel = $("f-status");
  for (const s of STATES) sel.append(el("option", { value: s }, s));
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    view.filters = {
      status: sel.value,
      customer: $("f-customer").value.trim(),
      provider: $("f-provider").value.trim(),
    };
    view.offset = 0;
    loadJobs();
  });
  sel.addEventListener("change", () => $("filters").requestSubmit());
  $("account-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    view.account = $("account-address").value.trim();
    loadAccount();
  });
  $("prev").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - PAGE);
    loadJobs();
  });
  $("next").addEventListener("click", () => {
    view.offset += PAGE;
    loadJobs();
  });
  refresh();
  setInterval(() => { if ($("auto-refresh").checked) refresh(); }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
