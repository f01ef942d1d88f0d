"""The ``--serve`` page: plain HTML and JavaScript, no framework, nothing from the internet.

It shows the filtered stream beside the source (MJPEG ``<img>``s), polls
``/figures.json`` twice a second for the figures, the banks' plans and the notes
(reloads, rejected configs), and has a snapshot, a pause and a source toggle button.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pipeline</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{margin:0;background:#111;color:#ddd;font:14px/1.4 system-ui,sans-serif}
header{display:flex;gap:.5em;align-items:center;padding:.5em 1em;background:#1c1c1c}
header b{margin-right:auto}
button{background:#333;color:#eee;border:1px solid #555;border-radius:4px;padding:.3em .8em;
cursor:pointer}
#views{display:flex;flex-wrap:wrap;gap:8px;padding:8px}
figure{margin:0;flex:1 1 420px}figcaption{color:#999;font-size:12px}
figure img{width:100%;background:#000;display:block}
#side{display:flex;flex-wrap:wrap;align-items:flex-start;gap:16px;padding:0 1em 1em}
table{border-collapse:collapse}td,th{padding:1px 8px;text-align:left;vertical-align:top}
th{color:#999;font-weight:normal}td.n{text-align:right;font-variant-numeric:tabular-nums}
#notes div{margin:2px 0}.error{color:#f77}.reload{color:#7d7}.state{color:#fc6}
</style></head><body>
<header><b>pipeline</b><span id="state" class="state">connecting…</span>
<button id="pause" type="button">pause</button>
<button id="snapshot" type="button">snapshot</button>
<button id="toggle" type="button">hide source</button></header>
<div id="views">
<figure id="srcview"><img id="src" alt="source" src="/stream.mjpg?feed=src">
<figcaption>source: <span id="source"></span></figcaption></figure>
<figure><img id="out" alt="filtered" src="/stream.mjpg?feed=out">
<figcaption>filtered: <span id="output"></span></figcaption></figure></div>
<div id="side">
<table id="figures"><tbody>
<tr><th>frames in / out</th><td class="n" id="frames"></td></tr>
<tr><th>fps in / out</th><td class="n" id="fps"></td></tr>
<tr><th>latency p50 / p99</th><td class="n" id="latency"></td></tr>
<tr><th>dropped</th><td class="n" id="dropped"></td></tr>
<tr><th>read / filter / write</th><td class="n" id="threads"></td></tr>
<tr><th>viewers</th><td class="n" id="viewers"></td></tr>
<tr><th>input</th><td id="input"></td></tr>
<tr><th>chain</th><td id="chain"></td></tr></tbody></table>
<table><thead><tr><th>step</th><th>ms a frame</th><th>out</th></tr></thead>
<tbody id="steps"></tbody></table>
<table><thead><tr><th>bank</th><th>method</th><th>kernel</th><th>channels</th>
<th>padding</th><th>border</th></tr></thead><tbody id="banks"></tbody></table>
<div id="notes"></div></div>
<script>
"use strict";
const $ = id => document.getElementById(id);
const ms = v => v === null || v === undefined ? "–" : v.toFixed(1) + " ms";
const num = v => v === null || v === undefined ? "–" : v.toFixed(1);
function rows(body, items, cells) {
  body.replaceChildren(...items.map(item => {
    const tr = document.createElement("tr");
    for (const [text, cls] of cells(item)) {
      const td = document.createElement("td");
      td.textContent = text; if (cls) td.className = cls; tr.appendChild(td);
    }
    return tr;
  }));
}
let seenChain = null;
async function refresh() {
  let f;
  try { f = await (await fetch("/figures.json", {cache: "no-store"})).json(); }
  catch (e) { $("state").textContent = "disconnected"; return; }
  $("state").textContent = f.paused ? "paused" : f.state;
  $("pause").textContent = f.paused ? "resume" : "pause";
  $("source").textContent = f.source;
  $("output").textContent = f.output || "";
  $("frames").textContent = (f.frames_in ?? "–") + " / " + (f.frames_out ?? "–");
  $("fps").textContent = num(f.fps_in) + " / " + num(f.fps_out);
  $("latency").textContent = ms(f.latency_p50_ms) + " / " + ms(f.latency_p99_ms);
  $("dropped").textContent = f.dropped ?? "–";
  $("threads").textContent = [f.read_ms, f.filter_ms, f.write_ms].map(ms).join(" / ");
  $("input").textContent = f.input || "";
  $("viewers").textContent = (f.viewers || []).length;
  $("chain").textContent = f.chain === undefined ? "" :
    "#" + f.chain + (f.config ? " of " + f.config : "") + (f.loops ? ", loop " + f.loops : "");
  rows($("steps"), f.steps || [], s => [[s.name],
    [s.inside ? "in " + s.inside : ms(s.ms), "n"], [s.shape]]);
  rows($("banks"), f.banks || [], b => [[b.name], [b.method], [b.kernel], [b.channels],
                                       [b.padding], [b.border]]);
  $("notes").replaceChildren(...(f.notes || []).slice().reverse().map(n => {
    const d = document.createElement("div");
    d.className = n.kind; d.textContent = n.at.toFixed(1) + " s  " + n.text; return d;
  }));
  if (seenChain !== null && f.chain !== seenChain) {  // a reload: reconnect the pictures
    for (const id of ["src", "out"]) $(id).src = "/stream.mjpg?feed=" + id + "&c=" + f.chain;
  }
  seenChain = f.chain;
}
$("pause").onclick = () => fetch("/pause", {method: "POST", body: "{}",
  headers: {"Content-Type": "application/json"}}).then(refresh);
$("snapshot").onclick = () => {
  const a = document.createElement("a");
  a.href = "/snapshot.jpg?feed=out&download=1"; a.download = "";
  document.body.appendChild(a); a.click(); a.remove();
};
$("toggle").onclick = () => {
  const view = $("srcview"), hidden = view.style.display === "none";
  view.style.display = hidden ? "" : "none";
  $("toggle").textContent = hidden ? "hide source" : "show source";
};
refresh(); setInterval(refresh, 500);
</script></body></html>
"""
