// distill view: one page, five tabs. Everything the server sends is put in with textContent.
"use strict";
const $ = (s) => document.querySelector(s);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
const state = { round: "", tab: "live", offset: 0, limit: 50, live: null, kinds: [], busy: false,
                label: { item: null, mode: null, picked: new Set() },
                judge: { sheet: "", items: [], i: 0, mode: null, picked: new Set() } };

async function api(path, opts) {
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || `${r.status} ${r.statusText}`);
  return body;
}
const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();
const fmt = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US");

// ---- run and tabs ------------------------------------------------------------------------
async function loadRun() {
  const run = await api("/api/run");
  $("#root").textContent = run.root;
  const sel = $("#round");
  sel.replaceChildren(...run.rounds.map((r) => { const o = el("option", r || "(run)"); o.value = r; return o; }));
  state.round = run.rounds[run.rounds.length - 1];
  sel.value = state.round;
  $("#j-sheet").replaceChildren(...run.sheets.map((s) => { const o = el("option", s); o.value = s; return o; }));
  state.judge.sheet = run.sheets[0] || "";
}
function show(tab) {
  state.tab = tab;
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("on", b.dataset.tab === tab));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("on", s.id === tab));
  ({ live: startLive, browse: loadRecords, corpus: loadCorpus, label: loadLabel, judge: loadJudge })[tab]();
}
// blur: a focused tab button would take the labelling keys (Enter would reload the tab)
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => { b.blur(); show(b.dataset.tab); }));
$("#round").addEventListener("change", (e) => { state.round = e.target.value; state.offset = 0; show(state.tab); });

// ---- live --------------------------------------------------------------------------------
function startLive() {
  if (state.live) state.live.close();
  state.live = new EventSource(`/api/live/stream?${q({ round: state.round })}`);
  state.live.onmessage = (ev) => renderLive(JSON.parse(ev.data));
}
function renderLive(s) {
  $("#l-status").textContent = s.status || "–";
  $("#l-shards").textContent = `${fmt(s.shards_done)} / ${fmt(s.shards_total)}`;
  $("#l-samples").textContent = fmt(s.samples);
  $("#l-rate").textContent = s.samples_per_s === undefined ? "–" : s.samples_per_s.toFixed(1);
  $("#l-tokens").textContent = `${fmt(s.prompt_tokens)} / ${fmt(s.completion_tokens)}`;
  const b = s.budget || {};
  const cap = b.max_cost != null ? `${s.cost.toFixed(4)} / ${b.max_cost}` :
              b.max_completion_tokens != null ? `${fmt(s.completion_tokens)} / ${fmt(b.max_completion_tokens)} tok` : `${s.cost.toFixed(4)} / no cap`;
  $("#l-budget").textContent = cap;
  const err = s.error || s.cache_error;
  $("#l-error").hidden = !err;
  $("#l-error").textContent = err || "";
  $("#l-newest").replaceChildren(...(s.newest || []).map((n) => el("li", n.text)));
  const rows = s.funnel || [];
  const first = rows.length ? (rows[0].count || 1) : 1;
  $("#l-funnel tbody").replaceChildren(...rows.map((r) => {
    const tr = el("tr");
    tr.append(el("td", r.stage), el("td", fmt(r.count)));
    const bar = el("div", undefined, "bar"); bar.style.width = `${Math.max(1, 200 * r.count / first)}px`;
    const td = el("td"); td.append(bar); tr.append(td);
    const why = {};  // "entity_dropped:Hoon" and "entity_dropped:Stray" count as one reason here
    Object.entries(r.dropped || {}).forEach(([k, v]) => { const p = k.split(":")[0]; why[p] = (why[p] || 0) + v; });
    tr.append(el("td", Object.entries(why).filter(([, v]) => v).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(", ")));
    return tr;
  }));
}

// ---- browse ------------------------------------------------------------------------------
function fillSelect(sel, counts, label) {
  const keep = sel.value;
  const opts = [el("option", label)]; opts[0].value = "";
  Object.entries(counts).sort((a, b) => b[1] - a[1]).forEach(([k, v]) => { const o = el("option", `${k} (${v})`); o.value = k; opts.push(o); });
  sel.replaceChildren(...opts);
  sel.value = [...sel.options].some((o) => o.value === keep) ? keep : "";
}
function scoreCell(scores) {
  const all = Object.entries(scores).map(([k, v]) => `${k}=${Number(v).toFixed(3)}`);
  const shown = all.slice(0, 4);
  const td = el("td", shown.join("  ") + (all.length > shown.length ? "  …" : ""), "scores");
  td.title = all.join("\n");
  return td;
}
async function loadRecords() {
  const f = new FormData($("#b-form"));
  const params = { round: state.round, offset: state.offset, limit: state.limit };
  for (const [k, v] of f.entries()) params[k] = v;
  const res = await api(`/api/records?${q(params)}`);
  const form = $("#b-form");
  fillSelect(form.verdict, res.facets.verdict, "all");
  fillSelect(form.stage, res.facets.stage, "any stage");
  fillSelect(form.reason, res.facets.reason, "any reason");
  const sk = form.score.value;
  form.score.replaceChildren(el("option", "score…"), ...res.facets.scores.map((s) => { const o = el("option", s); o.value = s; return o; }));
  form.score.options[0].value = ""; form.score.value = sk;
  $("#b-meta").textContent = `${fmt(res.total)} records match; showing ${res.total ? res.offset + 1 : 0}–${res.offset + res.rows.length}`;
  $("#b-errors").hidden = !res.error_count;
  $("#b-errors").textContent = res.error_count ? `${res.error_count} unreadable line(s):\n${res.errors.join("\n")}` : "";
  $("#b-table tbody").replaceChildren(...res.rows.map((r) => {
    const tr = el("tr"); tr.dataset.id = r.id;
    tr.append(el("td", r.verdict, `v-${r.verdict}`), el("td", r.input), el("td", r.output),
              el("td", r.stage === r.reason ? r.stage : [r.stage, r.reason].filter(Boolean).join(" — ")),
              scoreCell(r.scores));
    return tr;
  }));
  $("#b-prev").disabled = state.offset === 0;
  $("#b-next").disabled = res.offset + res.rows.length >= res.total;
}
$("#b-form").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadRecords(); });
$("#b-form").addEventListener("change", () => { state.offset = 0; loadRecords(); });
$("#b-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadRecords(); });
$("#b-next").addEventListener("click", () => { state.offset += state.limit; loadRecords(); });

// ---- corpus ------------------------------------------------------------------------------
async function loadCorpus() {
  const { corpus } = await api(`/api/corpus?${q({ round: state.round })}`);
  $("#c-none").hidden = !!corpus;
  $("#c-splits").hidden = !corpus;
  if (!corpus) { $("#c-plots").replaceChildren(); $("#c-card").replaceChildren(); return; }
  $("#c-splits tbody").replaceChildren(...Object.entries(corpus.splits).map(([s, v]) => {
    const tr = el("tr"); tr.append(el("td", s), el("td", fmt(v.rows)), el("td", fmt(v.groups))); return tr; }));
  const card = $("#c-card"); card.replaceChildren();
  if (corpus.card) { const a = el("a", "dataset card (README.md)"); a.href = `/files/${corpus.card}`; card.append(a); }
  $("#c-plots").replaceChildren(...corpus.plots.map((p) => { const i = el("img"); i.src = `/files/${p}`; i.alt = p; return i; }));
}

// ---- label and judge: one keyboard scheme -----------------------------------------------
function renderKinds(box, picked) {
  box.replaceChildren(...state.kinds.map((k, i) => el("span", `${i + 1} ${k}`, picked.has(k) ? "on" : "")));
}
function keyScheme(ev, s, box, submit) {
  const k = ev.key.toLowerCase();
  if (["p", "c", "d", "m", "enter", "escape"].includes(k) || /^[1-9]$/.test(k)) ev.preventDefault();
  if (s.mode === "M") {
    if (/^[1-9]$/.test(k) && Number(k) <= state.kinds.length) {
      const kind = state.kinds[Number(k) - 1];
      s.picked.has(kind) ? s.picked.delete(kind) : s.picked.add(kind);
      renderKinds(box, s.picked);
    } else if (k === "enter") {
      if (s.picked.size) submit("M", [...s.picked]);
    } else if (k === "escape") { s.mode = null; box.hidden = true; }
    return;
  }
  if (k === "p" || k === "c" || k === "d") submit(k.toUpperCase(), []);
  else if (k === "m") { s.mode = "M"; s.picked = new Set(); box.hidden = false; renderKinds(box, s.picked); }
}

async function loadLabel() {
  const res = await api(`/api/label/next?${q({ round: state.round })}`);
  state.kinds = res.kinds;
  const s = state.label; s.item = res.item; s.mode = null; $("#lb-kinds").hidden = true;
  const c = res.counts;
  $("#lb-meta").textContent = `${fmt(res.labelled)} of ${fmt(res.pool)} pairs labelled (P ${c.P}, C ${c.C}, M ${c.M}, D ${c.D}) → ${res.file}`;
  $("#lb-x").textContent = res.item ? res.item.input : "";
  $("#lb-y").textContent = res.item ? res.item.output : "";
  $("#lb-pair").hidden = !res.item;
  if (!res.item) $("#lb-status").textContent = "Every pair of this round is labelled.";
}
async function submitLabel(label, kinds) {
  const s = state.label;
  if (!s.item || state.busy) return;
  state.busy = true;
  try {
    await api("/api/label", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: s.item.id, label, kinds, round: state.round }) });
    $("#lb-status").textContent = `saved ${label}${kinds.length ? " (" + kinds.join(", ") + ")" : ""}`;
    await loadLabel();  // the label is on disk (the server fsyncs before answering) before the next pair shows
  } catch (e) { $("#lb-status").textContent = `not saved: ${e.message}`; }
  finally { state.busy = false; }
}

async function loadJudge() {
  const s = state.judge;
  if (!s.sheet) { $("#j-meta").textContent = "No blind sheet in this run: `distill eval CONFIG --sheet N` writes one."; $("#j-pair").hidden = true; return; }
  const res = await api(`/api/judge?${q({ sheet: s.sheet })}`);
  state.kinds = res.kinds; s.items = res.items;
  const next = s.items.findIndex((it) => !it.label);
  s.i = next === -1 ? 0 : next;
  renderJudge();
}
function renderJudge() {
  const s = state.judge, it = s.items[s.i];
  const judged = s.items.filter((x) => x.label).length;
  $("#j-meta").textContent = `item ${s.i + 1} of ${s.items.length}; ${judged} judged` + (it && it.label ? ` — this one: ${it.label} ${it.kinds.join(", ")}` : "");
  $("#j-x").textContent = it ? it.x : ""; $("#j-y").textContent = it ? it.y : "";
  $("#j-pair").hidden = !it; s.mode = null; $("#j-kinds").hidden = true;
}
async function submitJudge(label, kinds) {
  const s = state.judge, it = s.items[s.i];
  if (!it || state.busy) return;
  state.busy = true;
  try {
    await api("/api/judge", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sheet: s.sheet, id: it.id, label, kinds }) });
    it.label = label; it.kinds = kinds;
    $("#j-status").textContent = `saved ${label}`;
    const next = s.items.findIndex((x, j) => j > s.i && !x.label);
    if (next !== -1) s.i = next;
    renderJudge();
  } catch (e) { $("#j-status").textContent = `not saved: ${e.message}`; }
  finally { state.busy = false; }
}
$("#j-sheet").addEventListener("change", (e) => { state.judge.sheet = e.target.value; loadJudge(); });

document.addEventListener("keydown", (ev) => {
  if (ev.target.closest("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (state.tab === "label") keyScheme(ev, state.label, $("#lb-kinds"), submitLabel);
  else if (state.tab === "judge") {
    const s = state.judge;
    if (ev.key === "ArrowRight" && s.i < s.items.length - 1) { s.i++; renderJudge(); }
    else if (ev.key === "ArrowLeft" && s.i > 0) { s.i--; renderJudge(); }
    else keyScheme(ev, s, $("#j-kinds"), submitJudge);
  }
});

loadRun().then(() => { show("live"); document.body.dataset.ready = "1"; }).catch((e) => { document.body.prepend(el("div", `distill view: ${e.message}`, "error")); });
