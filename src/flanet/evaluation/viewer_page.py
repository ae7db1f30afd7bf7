"""The HTML, CSS and JavaScript of ``viewer.html`` (no external resource: works offline from disk).

The page reads one JSON object embedded in a ``<script type="application/json">`` element:
``{"title", "note", "layers": {"gt", "pred", "heat"}, "videos": [{"id", "value_name", "frames":
[{"name", "index", "value", "img", "gt", "pred", "heat", "attention"}], "worst_rule", "worst": [frame positions]}]}``,
where ``img`` is a JPEG and ``gt`` / ``pred`` / ``heat`` transparent PNG overlays (data URIs, or null
when absent). A layer no frame has (``layers``) has no toggle; ``worst_rule`` ``"lowest"`` lists the
frames of lowest value, ``"jumps"`` those of largest change from the previous frame, with the change.
The value plot keeps its label in a band above the curve. ``attention`` (``flanet predict`` with a
diagnosis head; null otherwise) is the head's attention weight of the frame over the whole video: a
second, purple curve on the plot scaled to its own maximum, and a figure in the frame's info line.
"""

from __future__ import annotations

STYLE = """
body{font-family:system-ui,sans-serif;margin:1em;color:#222;max-width:1200px}
#main{display:flex;gap:1.5em;flex-wrap:wrap}
#stage{position:relative;width:min(70vw,512px);background:#000}
#stage img{position:absolute;left:0;top:0;width:100%;image-rendering:pixelated}
#stage img.base{position:relative}
#stage img#heat{image-rendering:auto}
.controls{margin:.5em 0;display:flex;gap:.6em;align-items:center;flex-wrap:wrap}
#scrub{width:min(70vw,512px)}
#plot{border:1px solid #ccc;background:#fafafa;cursor:crosshair}
#worst button{display:block;margin:2px 0;font-size:13px;text-align:left;width:100%}
.key{display:inline-block;width:.9em;height:.9em;margin-right:.2em;vertical-align:middle}
small{color:#555}
"""

SCRIPT = r"""
const DATA = JSON.parse(document.getElementById('viewer-data').textContent);
let video = 0, frame = 0, timer = null;
const $ = (id) => document.getElementById(id);
function current() { return DATA.videos[video]; }
function setLayer(id, src, on) {
  const el = $(id);
  if (src) { el.src = src; el.style.display = on ? '' : 'none'; } else { el.removeAttribute('src'); el.style.display = 'none'; }
}
function show(i) {
  const v = current();
  frame = Math.max(0, Math.min(v.frames.length - 1, i));
  const f = v.frames[frame];
  $('base').src = f.img;
  setLayer('gt', f.gt, $('show-gt').checked);
  setLayer('pred', f.pred, $('show-pred').checked);
  setLayer('heat', f.heat, $('show-heat').checked);
  $('scrub').value = frame;
  const value = f.value === null ? '-' : f.value.toFixed(3);
  const attention = f.attention === null || f.attention === undefined ? '' : `; diagnosis attention ${f.attention.toFixed(3)}`;
  $('info').textContent = `${v.id} / frame ${f.name} (${frame + 1} of ${v.frames.length}): ${v.value_name} ${value}${attention}`;
  drawPlot();
}
const ATTENTION_COLOUR = '#9467bd';
const LABEL_BAND = 18;  // px above the curve for its label: the two never overlap
function drawPlot() {
  const v = current(), c = $('plot'), g = c.getContext('2d');
  const w = c.width, h = c.height, n = v.frames.length;
  const values = v.frames.map((f) => f.value === null ? 0 : f.value);
  const top = Math.max(1e-9, v.value_name === 'Dice' ? 1 : Math.max(...values));
  g.clearRect(0, 0, w, h);
  g.strokeStyle = '#1f77b4'; g.lineWidth = 1.5; g.beginPath();
  values.forEach((y, i) => { const px = n > 1 ? i * (w - 1) / (n - 1) : w / 2,
    py = h - 4 - y / top * (h - 8 - LABEL_BAND);
    if (i === 0) g.moveTo(px, py); else g.lineTo(px, py); });
  g.stroke();
  const attention = v.frames.map((f) => f.attention === null || f.attention === undefined ? null : f.attention);
  const attended = attention.some((a) => a !== null), peak = Math.max(1e-12, ...attention.map((a) => a || 0));
  if (attended) {  // the diagnosis head's attention over frames, scaled to its own maximum
    g.strokeStyle = ATTENTION_COLOUR; g.lineWidth = 1.5; g.beginPath();
    attention.forEach((a, i) => { const px = n > 1 ? i * (w - 1) / (n - 1) : w / 2,
      py = h - 4 - (a || 0) / peak * (h - 8 - LABEL_BAND);
      if (i === 0) g.moveTo(px, py); else g.lineTo(px, py); });
    g.stroke();
  }
  const x = n > 1 ? frame * (w - 1) / (n - 1) : w / 2;
  g.strokeStyle = '#000'; g.beginPath(); g.moveTo(x, LABEL_BAND); g.lineTo(x, h); g.stroke();
  g.fillStyle = '#333'; g.font = '11px sans-serif';
  g.fillText(`${v.value_name} per frame (max ${top.toFixed(2)}); click to jump`, 4, 12);
  if (attended) { g.fillStyle = ATTENTION_COLOUR; g.textAlign = 'right';
    g.fillText(`diagnosis attention (max ${peak.toFixed(3)})`, w - 4, 12); g.textAlign = 'left'; }
}
function worstText(v, pos) {
  const f = v.frames[pos], value = (x) => x === null ? '-' : x.toFixed(3);
  if (v.worst_rule !== 'jumps') return `frame ${f.name}: ${v.value_name} ${value(f.value)}`;
  const before = pos > 0 ? v.frames[pos - 1].value : f.value;
  const change = f.value === null || before === null ? null : f.value - before;
  return `frame ${f.name}: ${change === null ? '-' : (change >= 0 ? '+' : '') + change.toFixed(1)} (to ${value(f.value)})`;
}
function selectVideo(i) {
  video = i; const v = current();
  $('scrub').max = v.frames.length - 1;
  const list = $('worst'); list.innerHTML = '';
  v.worst.forEach((pos) => { const b = document.createElement('button');
    b.textContent = worstText(v, pos);
    b.onclick = () => { stop(); show(pos); }; list.appendChild(b); });
  show(0);
}
function play() {
  if (timer) return;
  $('play').textContent = 'Pause';
  timer = setInterval(() => { const v = current(); show(frame + 1 < v.frames.length ? frame + 1 : 0); }, 1000 / Number($('fps').value));
}
function stop() { if (timer) { clearInterval(timer); timer = null; } $('play').textContent = 'Play'; }
$('play').onclick = () => timer ? stop() : play();
$('prev').onclick = () => { stop(); show(frame - 1); };
$('next').onclick = () => { stop(); show(frame + 1); };
$('scrub').oninput = (e) => { stop(); show(Number(e.target.value)); };
$('fps').onchange = () => { if (timer) { stop(); play(); } };
['show-gt', 'show-pred', 'show-heat'].forEach((id) => { $(id).onchange = () => show(frame); });
$('plot').onclick = (e) => { const r = e.target.getBoundingClientRect(), n = current().frames.length;
  stop(); show(Math.round((e.clientX - r.left) / r.width * (n - 1))); };
const select = $('video');
DATA.videos.forEach((v, i) => { const o = document.createElement('option'); o.value = i;
  o.textContent = `${v.id} (${v.frames.length} frames)`; select.appendChild(o); });
select.onchange = () => { stop(); selectVideo(Number(select.value)); };
document.addEventListener('keydown', (e) => { if (e.key === 'ArrowRight') { stop(); show(frame + 1); }
  else if (e.key === 'ArrowLeft') { stop(); show(frame - 1); } else if (e.key === ' ') { e.preventDefault(); timer ? stop() : play(); } });
['gt', 'pred', 'heat'].forEach((layer) => { if (!DATA.layers[layer]) $('show-' + layer).parentElement.style.display = 'none'; });
document.title = DATA.title; $('title').textContent = DATA.title; $('note').textContent = DATA.note;
selectVideo(0);
"""

BODY = """<h2 id="title"></h2>
<p><small id="note"></small></p>
<div class="controls"><label>Video <select id="video"></select></label>
<button id="prev">&#9664;</button><button id="play">Play</button><button id="next">&#9654;</button>
<label>fps <input id="fps" type="number" min="1" max="60" value="8" style="width:4em"></label></div>
<div class="controls">
<label><input type="checkbox" id="show-gt" checked><span class="key" style="background:{truth}"></span>ground truth</label>
<label><input type="checkbox" id="show-pred" checked><span class="key" style="background:{prediction}"></span>prediction</label>
<label><input type="checkbox" id="show-heat" checked><span class="key" style="background:{heatmap}"></span>heatmap</label>
</div>
<div id="main"><div>
<div id="stage"><img id="base" class="base" alt="frame"><img id="heat" alt=""><img id="gt" alt=""><img id="pred" alt=""></div>
<div><input id="scrub" type="range" min="0" max="0" value="0"></div>
<div id="info"></div>
<canvas id="plot" width="512" height="120"></canvas>
</div><div><b id="worst-title">Worst frames</b><div id="worst"></div></div></div>
"""


def render_page(data_json: str, truth: str, prediction: str, heatmap: str, worst_title: str) -> str:
    """The complete page around the embedded JSON (``</`` in it must already be escaped)."""
    body = BODY.format(truth=truth, prediction=prediction, heatmap=heatmap).replace(
        '<b id="worst-title">Worst frames</b>', f'<b id="worst-title">{worst_title}</b>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>flanet viewer</title>'
        f"<style>{STYLE}</style></head><body>\n{body}"
        f'<script type="application/json" id="viewer-data">{data_json}</script>\n'
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )
