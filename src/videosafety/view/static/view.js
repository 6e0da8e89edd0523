// videosafety view: the list, the filters and one sample. Every text from a run is put in the
// page with textContent (never innerHTML): responses may hold HTML. State lives in the URL hash.
"use strict";
const VS = (() => {
  const pending = new Map(), loaded = new Map();
  const PAGE = 50, FIELDS = ["subset", "category", "subcategory", "language", "condition"];
  // the detail files leave out null fields (view/index.py compact): they come back here
  const ROW_KEYS = ["sample_id", "condition", "subset", "category", "subcategory", "language", "prompt",
    "harmful_intention", "response", "error", "seconds", "attack", "peer", "verdicts", "frames", "reference_response", "group_id", "group"];
  const VERDICT_KEYS = ["label", "safe", "refusal", "helpfulness", "harm_score", "reason", "unjudged_reason", "judge", "judge_version"];
  const full = (keys, o) => Object.fromEntries(keys.map(k => [k, o[k] === undefined ? null : o[k]]).concat(
    Object.entries(o).filter(([k]) => !keys.includes(k))));
  const fullRow = (row) => ({ ...full(ROW_KEYS, row), group: row.group || [],
    verdicts: (row.verdicts || []).map(v => v && full(VERDICT_KEYS, v)) });
  let runs = [], state = {}, matches = [], total = 0, current = null;

  function got(src, data) { const p = pending.get(src); if (p) { pending.delete(src); p(data); } }
  function load(url) {  // a data file is a script that calls VS.got with its own src
    const abs = new URL(url, location.href).href;
    if (!loaded.has(abs)) loaded.set(abs, new Promise((resolve, reject) => {
      pending.set(abs, resolve);
      const s = document.createElement("script");
      s.src = abs; s.onerror = () => { pending.delete(abs); loaded.delete(abs); reject(new Error("cannot load " + url)); };
      s.onload = () => s.remove();
      document.head.appendChild(s);
    }));
    return loaded.get(abs);
  }
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }

  // -- state <-> URL hash
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1)), s = {};
    for (const [k, v] of p) s[k] = v;
    return s;
  }
  function writeHash(replace) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) if (v !== "" && v !== undefined && v !== null) p.set(k, v);
    const h = "#" + p.toString();
    if (h !== location.hash) { if (replace) history.replaceState(null, "", h); else location.hash = h; }
  }

  // -- filtering over the index's integer columns
  function judgesAll() { const s = new Set(); runs.forEach(r => r.ix.run.judges.forEach(j => s.add(j))); return [...s]; }
  function filter() {
    matches = []; total = 0;
    const want = state.run !== undefined && state.run !== "" ? new Set(state.run.split(",").map(Number)) : null;
    for (const r of runs) {
      if (want && !want.has(r.n)) { matches.push({ r, rows: new Int32Array(0) }); continue; }
      const c = r.ix.cols, d = r.ix.dicts, n = r.ix.n, tests = [];
      let impossible = false;
      for (const f of FIELDS) if (state[f]) {
        const code = d[f].indexOf(state[f]); if (code < 0) impossible = true; else tests.push([c[f], code]);
      }
      r.ix.run.judges.forEach((j, ji) => {
        const v = state["v." + j];
        if (v) { const code = d.verdict.indexOf(v); if (code < 0) impossible = true; else tests.push([c.v[ji], code]); }
      });
      for (const [k, col] of [["err", c.err], ["dis", c.dis]]) if (state[k] === "1" || state[k] === "0") tests.push([col, +state[k]]);
      const fails = c.fail, failOnly = state.fail === "1", q = (state.q || "").toLowerCase();
      const out = [];
      if (!impossible) for (let i = 0; i < n; i++) {
        let ok = true;
        for (let t = 0; t < tests.length; t++) if (tests[t][0][i] !== tests[t][1]) { ok = false; break; }
        if (ok && failOnly) { ok = false; for (let j = 0; j < fails.length; j++) if (fails[j][i]) { ok = true; break; } }
        if (ok && q && !c.sid[i].toLowerCase().includes(q)) ok = false;
        if (ok) out.push(i);
      }
      matches.push({ r, rows: Int32Array.from(out) }); total += out.length;
    }
  }
  function at(k) {  // k-th match over all runs
    for (const m of matches) { if (k < m.rows.length) return [m.r, m.rows[k]]; k -= m.rows.length; }
    return null;
  }
  function position(rn, rid) {
    let base = 0;
    for (const m of matches) {
      if (m.r.n === rn) { const i = m.rows.indexOf(rid); return i < 0 ? -1 : base + i; }
      base += m.rows.length;
    }
    return -1;
  }
  function isFail(r, i) { return r.ix.cols.fail.some(col => col[i]); }

  // -- the list
  function buildFilters() {
    const form = $("filters"); form.textContent = "";
    const options = (values) => [el("option", { value: "" }, "any"), ...values.map(v => el("option", { value: v }, v === "" ? "(none)" : v))];
    const union = (get) => { const s = new Set(); runs.forEach(r => get(r).forEach(v => s.add(v))); return [...s].sort(); };
    const add = (key, label, values) => {
      const sel = el("select", { id: "f-" + key.replace(".", "-"), name: key }, ...options(values));
      sel.value = state[key] || "";
      sel.addEventListener("change", () => { state[key] = sel.value; state.page = ""; writeHash(); });
      form.append(el("label", {}, label, sel));
    };
    if (runs.length > 1) {
      const sel = el("select", { id: "f-run", name: "run" }, el("option", { value: "" }, "all"),
        ...runs.map(r => el("option", { value: String(r.n) }, r.ix.run.model + " (" + r.ix.run.name + ")")));
      sel.value = state.run || "";
      sel.addEventListener("change", () => { state.run = sel.value; state.page = ""; writeHash(); });
      form.append(el("label", {}, "model", sel));
    }
    for (const f of FIELDS) add(f, f === "subcategory" ? "sub-category" : f, union(r => r.ix.dicts[f]));
    for (const j of judgesAll()) add("v." + j, "verdict: " + j, union(r => r.ix.dicts.verdict));
    const flag = (key, label, yes, no) => {
      const sel = el("select", { id: "f-" + key, name: key }, el("option", { value: "" }, "any"),
        el("option", { value: "1" }, yes), el("option", { value: "0" }, no));
      sel.value = state[key] || "";
      sel.addEventListener("change", () => { state[key] = sel.value; state.page = ""; writeHash(); });
      form.append(el("label", {}, label, sel));
    };
    flag("dis", "judges", "disagree", "agree");
    flag("err", "errors", "error", "no error");
    const fail = el("select", { id: "f-fail", name: "fail" }, el("option", { value: "" }, "all rows"), el("option", { value: "1" }, "failures only"));
    fail.value = state.fail || "";
    fail.addEventListener("change", () => { state.fail = fail.value; state.page = ""; writeHash(); });
    form.append(el("label", {}, "show", fail));
    const q = el("input", { id: "f-q", name: "q", type: "search", placeholder: "sample id", value: state.q || "" });
    q.addEventListener("change", () => { state.q = q.value; state.page = ""; writeHash(); });
    form.append(el("label", {}, "sample id contains", q));
  }
  function renderList() {
    const page = Math.max(0, +(state.page || 0)), pages = Math.max(1, Math.ceil(total / PAGE));
    const p = Math.min(page, pages - 1);
    const judges = judgesAll();
    $("counts").textContent = total.toLocaleString("en") + " of " + runs.reduce((a, r) => a + r.ix.n, 0).toLocaleString("en") + " rows match";
    $("counts").dataset.count = total;
    $("page-info").textContent = "page " + (p + 1) + " of " + pages;
    $("prev-page").disabled = p === 0; $("next-page").disabled = p >= pages - 1;
    const head = $("rows").tHead; head.textContent = "";
    head.append(el("tr", {}, ...(runs.length > 1 ? [el("th", {}, "model")] : []),
      el("th", {}, "sample"), el("th", {}, "condition"), el("th", {}, "subset"), el("th", {}, "category / sub-category"),
      el("th", {}, "language"), ...judges.map(j => el("th", {}, j)), el("th", {}, "error")));
    const body = $("rows").tBodies[0]; body.textContent = "";
    for (let k = p * PAGE; k < Math.min(total, (p + 1) * PAGE); k++) {
      const [r, i] = at(k), c = r.ix.cols, d = r.ix.dicts;
      const cells = judges.map(j => {
        const ji = r.ix.run.judges.indexOf(j);
        if (ji < 0) return el("td", {}, "");
        return el("td", {}, el("span", { class: "chip" + (c.fail[ji][i] ? " fail" : "") }, d.verdict[c.v[ji][i]]));
      });
      body.append(el("tr", { "data-run": r.n, "data-rid": i, onclick: () => openSample(r.n, i) },
        ...(runs.length > 1 ? [el("td", {}, r.ix.run.model)] : []),
        el("td", { class: "sid" }, c.sid[i]), el("td", {}, d.condition[c.condition[i]]), el("td", {}, d.subset[c.subset[i]]),
        el("td", {}, d.category[c.category[i]] + " / " + d.subcategory[c.subcategory[i]]), el("td", {}, d.language[c.language[i]]),
        ...cells, el("td", {}, c.err[i] ? el("span", { class: "chip err" }, "error") : "")));
    }
  }

  // -- one sample
  function openSample(rn, rid) { state.open = rn + ":" + rid; writeHash(); }
  async function detail(r, i) {
    const shard = Math.floor(i / r.ix.shard);
    const d = await load(r.base + "detail/" + String(shard).padStart(5, "0") + ".js");
    return fullRow(d.rows[i - shard * r.ix.shard]);
  }
  function ridsOf(r, sid) {
    if (!r.bySid) { r.bySid = new Map(); r.ix.cols.sid.forEach((s, i) => { const a = r.bySid.get(s); if (a) a.push(i); else r.bySid.set(s, [i]); }); }
    return r.bySid.get(sid) || [];
  }
  function verdictBox(name, v) {
    if (!v) return el("div", { class: "verdict" }, el("b", {}, name + ": "), "no verdict");
    return el("div", { class: "verdict", "data-judge": name },
      el("b", {}, name + ": "), el("span", { class: "chip" + (v.fail ? " fail" : "") }, v.label === null ? "none" : v.label),
      " safe=" + v.safe + " refusal=" + v.refusal + (v.helpfulness != null ? " helpfulness=" + v.helpfulness : ""),
      el("div", {}, "reason: ", el("span", { class: "reason" }, v.reason || v.unjudged_reason || "")),
      el("div", { class: "version" }, "judge " + (v.judge || name) + ", version " + (v.judge_version || "?")));
  }
  function condBox(r, row, i) {
    return el("div", { class: "cond", "data-condition": row.condition },
      el("h4", {}, row.condition), row.error ? el("p", { class: "note error" }, "error: " + row.error) : null,
      el("div", { class: "text response" }, row.response === null ? "(no response)" : row.response),
      ...row.verdicts.map((v, j) => verdictBox(r.ix.run.judges[j], v && { ...v, fail: r.ix.cols.fail[j][i] })));
  }
  async function renderSample(rn, rid) {
    const view = $("sample-view"), r = runs.find(x => x.n === rn);
    $("list-view").hidden = true; view.hidden = false; view.textContent = "";
    if (!r || !(rid >= 0 && rid < r.ix.n)) { view.append(el("p", { class: "note" }, "no such row")); return; }
    const row = await detail(r, rid);
    current = { rn, rid, row };
    const k = position(rn, rid);
    const copy = el("button", { type: "button", id: "copy-json", onclick: () => copyJSON() }, "copy as JSON");
    view.append(el("div", { class: "toolbar" },
      el("button", { type: "button", id: "back", onclick: () => { state.open = ""; writeHash(); } }, "← list"),
      el("button", { type: "button", id: "prev-fail", onclick: () => step(-1) }, "previous failure (k)"),
      el("button", { type: "button", id: "next-fail", onclick: () => step(1) }, "next failure (j)"), copy,
      el("span", { id: "copy-status" }, ""),
      el("span", {}, k >= 0 ? "row " + (k + 1) + " of " + total + " in the filter" : "not in the current filter")));
    view.append(el("h2", { id: "sample-title" }, row.sample_id),
      el("p", { id: "sample-meta" }, [r.ix.run.model, row.subset, row.category + " / " + row.subcategory, row.language,
        "condition " + row.condition, row.attack ? "attack " + row.attack : null].filter(Boolean).join(" · ")));
    const body = el("div", { id: "sample-content", hidden: true });
    const warn = el("div", { class: "cw", id: "content-warning" },
      el("p", {}, "Content warning: this sample's query, frames and responses may describe violence, weapons, drugs, " +
        "self-harm, sexual content or other harmful material."),
      el("button", { type: "button", id: "show-content", onclick: () => { warn.hidden = true; body.hidden = false; } }, "show this sample"));
    view.append(warn, body);
    body.append(el("div", { class: "box" }, el("h3", {}, "query"), el("div", { class: "text", id: "query" }, row.prompt),
      row.harmful_intention ? el("p", {}, "harmful intention: ", el("span", { id: "intention" }, row.harmful_intention)) : null,
      el("h4", {}, "translation group " + (row.group_id || "(unknown: manifest not read)")),
      el("ul", { id: "group" }, ...(row.group || []).map(([sid, lang, q]) => el("li", {}, el("b", {}, lang + " "), sid + ": ", q)))));
    const frames = el("div", { class: "box", id: "frames" }, el("h3", {}, "frames the model was given"), "decoding…");
    body.append(frames);
    const conds = el("div", { class: "conds", id: "conditions" });
    body.append(el("h3", {}, "responses by condition"), conds);
    const sibs = ridsOf(r, row.sample_id);
    for (const i of sibs) conds.append(condBox(r, await detail(r, i), i));
    body.append(el("div", { class: "box", id: "reference" }, el("h3", {}, "reference response"),
      el("div", { class: "text" }, row.reference_response || "(none in the manifest)")));
    if (runs.length > 1) {
      const across = el("div", { id: "across" }, el("h3", {}, "the same sample in other runs"));
      for (const o of runs) if (o !== r) {
        const ids = ridsOf(o, row.sample_id);
        const box = el("div", { class: "conds", "data-run": o.n });
        for (const i of ids) box.append(condBox(o, await detail(o, i), i));
        across.append(el("h4", {}, o.ix.run.model + " (" + o.ix.run.name + ")" + (ids.length ? "" : ": not in this run")), box);
      }
      body.append(across);
    }
    try {
      const f = await load(r.base + "frames/" + row.frames + ".js");
      frames.textContent = ""; frames.append(el("h3", {}, "frames the model was given" + (f.budget ? " (budget " + f.budget + ")" : "")),
        el("p", { class: "hint" }, "in the video condition; text had none, blank had as many gray frames"));
      if (f.note) frames.append(el("p", { class: "note" }, f.note));
      frames.append(el("div", { class: "frames" }, ...f.frames.map(x =>
        el("figure", {}, el("img", { src: r.base + x.src, alt: "frame at " + x.t + " s", loading: "lazy" }), el("figcaption", {}, x.t + " s")))));
    } catch (e) { frames.textContent = ""; frames.append(el("h3", {}, "frames"), el("p", { class: "note" }, "frames not available here (" + e.message + ")")); }
  }
  function rowJSON() { if (!current) return null; return JSON.stringify(current.row, null, 2); }
  async function copyJSON() {
    const text = rowJSON(), status = $("copy-status");
    try { await navigator.clipboard.writeText(text); status.textContent = "copied"; }
    catch (e) {  // file:// and unfocused pages: fall back to a selected textarea
      const ta = el("textarea", { id: "copy-text", readonly: true, rows: 12, cols: 100 }); ta.value = text;
      $("sample-view").append(ta); ta.select();
      status.textContent = document.execCommand("copy") ? "copied" : "select and copy the text below";
      if (status.textContent === "copied") ta.remove();
    }
  }
  function step(dir) {  // next/previous failure in the current filter, from the open sample or the page
    const start = current && !$("sample-view").hidden ? position(current.rn, current.rid) : (+(state.page || 0)) * PAGE - 1;
    for (let k = start + dir; k >= 0 && k < total; k += dir) {
      const [r, i] = at(k);
      if (isFail(r, i)) { openSample(r.n, i); return true; }
    }
    $("status").textContent = "no " + (dir > 0 ? "next" : "previous") + " failure in this filter";
    return false;
  }

  async function route() {
    state = readHash();
    const t0 = performance.now();
    filter();
    if (state.open) { const [rn, rid] = state.open.split(":").map(Number); await renderSample(rn, rid); }
    else { $("sample-view").hidden = true; $("list-view").hidden = false; current = null; renderList(); }
    buildFilters();
    document.body.dataset.filterMs = (performance.now() - t0).toFixed(1);
    document.body.dataset.ready = "1";
  }
  async function start() {
    const t0 = performance.now();
    const list = await load("runs.js");
    runs = await Promise.all(list.runs.map(async (x) => ({ ...x, ix: await load(x.base + "index.js") })));
    const notes = runs.flatMap(r => r.ix.run.notes.map(n => r.ix.run.name + ": " + n));
    $("status").textContent = runs.map(r => r.ix.run.model).join(", ") + (notes.length ? " — " + notes.join("; ") : "");
    $("prev-page").addEventListener("click", () => { state.page = String(Math.max(0, +(state.page || 0) - 1)); writeHash(); });
    $("next-page").addEventListener("click", () => { state.page = String(+(state.page || 0) + 1); writeHash(); });
    window.addEventListener("hashchange", () => route());
    document.addEventListener("keydown", (e) => {
      if (e.target.closest && e.target.closest("input, select, textarea")) return;
      if (e.key === "j") step(1); else if (e.key === "k") step(-1);
      else if (e.key === "Escape" && state.open) { state.open = ""; writeHash(); }
    });
    await route();
    document.body.dataset.firstScreenMs = (performance.now() - t0).toFixed(1);
  }
  return { got, start, rowJSON, copyJSON, step };
})();
VS.start().catch((e) => { document.getElementById("status").textContent = "error: " + e.message; document.body.dataset.ready = "error"; });
