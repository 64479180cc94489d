"""One self-contained HTML file: Plotly's JavaScript inlined once, each figure as JSON beside its div.

Nothing is fetched when the page opens, so it works offline (an HPC login node,
a laptop on a plane). A small script renders every figure and then sets
``data-report-ready`` and ``data-plots-rendered`` on ``<body>``; errors raised
while rendering are counted in ``data-report-errors`` and shown in a banner.
"""

from __future__ import annotations

import html
import time
from importlib.metadata import version

from .. import __version__
from ..run_view import holder_text
from .data import ReportData
from .failures import MAX_GROUPS, FailureGroup
from .figure import ReportFigure
from .numbers import number_text

SIZE_MARK = "@@REPORT_SIZE@@"

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2433}
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:24px;margin:6px 0 4px}h2{font-size:19px;margin:34px 0 10px;border-bottom:2px solid #dde1e7;padding-bottom:4px}
h3{font-size:16px;margin:22px 0 8px}
.sub{color:#5b6475;margin:0 0 12px}
.card{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:8px 10px;margin:10px 0}
.plot{min-height:200px}
.note{color:#5b6475;font-size:13px;margin:2px 6px 6px}
.caption{font-size:14px;margin:4px 6px 6px;line-height:1.4}
.summary dl{grid-template-columns:130px 1fr}.summary dd{font-family:inherit;font-size:14px;word-break:normal}
table{border-collapse:collapse;width:100%;font-size:14px;background:#fff}
th,td{border:1px solid #e1e4ea;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f3f4f7;border:1px solid #e1e4ea;padding:8px;overflow:auto;font-size:12.5px;max-height:360px;margin:6px 0}
code{font-size:13px}
.pills span{display:inline-block;padding:3px 10px;border-radius:12px;margin:0 6px 6px 0;font-size:14px;background:#e8ebf0}
.pills .ok{background:#dcefdc}.pills .bad{background:#f7d9d9}.pills .wait{background:#fdf0cc}
.banner{padding:10px 14px;border-radius:6px;margin:10px 0;font-size:14px}
.live{background:#fdf0cc;border:1px solid #e9cf7a}.broken{background:#f7d9d9;border:1px solid #d99;display:none}
nav a{margin-right:14px}
dl{display:grid;grid-template-columns:190px 1fr;gap:4px 14px;font-size:14px;margin:0}
dt{color:#5b6475}dd{margin:0;white-space:pre-wrap;word-break:break-all;font-family:ui-monospace,monospace;font-size:13px}
footer{color:#5b6475;font-size:13px;margin-top:30px}
"""

_ERROR_CATCHER = """
window.__reportErrors = [];
window.addEventListener("error", function (e) { window.__reportErrors.push(String(e.message || e)); });
(function () { var original = console.error; console.error = function () {
  window.__reportErrors.push(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); }; })();
"""

_RENDER = """
(function () {
  var body = document.body, divs = Array.prototype.slice.call(document.querySelectorAll("div.plot"));
  function finish() {
    var drawn = divs.filter(function (d) { return d.querySelector(".main-svg"); }).length;
    body.setAttribute("data-plots-rendered", String(drawn));
    body.setAttribute("data-report-errors", String(window.__reportErrors.length));
    if (window.__reportErrors.length || drawn < divs.length) {
      var banner = document.getElementById("broken");
      banner.style.display = "block";
      banner.textContent = "Some figures could not be drawn (" + (divs.length - drawn) + " of " + divs.length +
        "): " + window.__reportErrors.join("; ");
    }
    body.setAttribute("data-report-ready", "1");
  }
  var template = JSON.parse(document.getElementById("plot-template").textContent);
  var drawing = divs.map(function (div) {
    try {
      var spec = JSON.parse(document.getElementById(div.id + "-data").textContent);
      if (!spec.layout.template) { spec.layout.template = template; }
      return Plotly.newPlot(div, spec.data, spec.layout, {responsive: true, displaylogo: false})
        .catch(function (err) { window.__reportErrors.push(String(err)); });
    } catch (err) { window.__reportErrors.push(String(err)); return Promise.resolve(); }
  });
  Promise.all(drawing).then(finish, finish);
})();
"""


def _template_json() -> str:
    import plotly.io as pio
    from plotly.io.json import to_json_plotly

    from .figure import TEMPLATE

    return to_json_plotly(pio.templates[TEMPLATE].to_plotly_json())


def _e(value) -> str:
    return html.escape(str(value))


def _script_json(text: str) -> str:
    """JSON that cannot end its <script> element early."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _plot(figure: ReportFigure, index: int) -> str:
    div = f"fig-{index}"
    caption = (
        f'<p class="caption"><b>Figure {index + 1}.</b> {_e(figure.caption)}</p>'
        if figure.caption
        else ""
    )
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in figure.notes)
    return (
        f'<div class="card"><div class="plot" id="{div}" data-key="{_e(figure.key)}"></div>{caption}{notes}'
        f'<script type="application/json" id="{div}-data">{_script_json(figure.figure.to_json())}</script></div>'
    )


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" …and {len(names) - limit:,} more" if len(names) > limit else "")


def _summary(data: ReportData, rows: list[tuple[str, str]]) -> str:
    counts = data.counts
    in_flight = counts.get("submitted", 0) + counts.get("running", 0)
    pills = [
        ("ok", f"{counts.get('succeeded', 0):,} succeeded"),
        ("bad", f"{counts.get('failed', 0):,} failed"),
    ]
    if in_flight:
        pills.append(("wait", f"{in_flight:,} in flight"))
    if counts.get("pending"):
        pills.append(("wait", f"{counts['pending']:,} pending"))
    if counts.get("cancelled"):
        pills.append(("", f"{counts['cancelled']:,} cancelled"))
    parts = [
        '<div class="pills">'
        + "".join(f'<span class="{c}">{_e(t)}</span>' for c, t in pills)
        + "</div>"
    ]
    parts.append(
        '<div class="card summary"><dl>'
        + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows)
        + "</dl></div>"
    )
    written = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data.generated_at))
    if data.holder:
        holder = data.holder
        parts.append(
            f'<div class="banner live">This run is still going ({_e(holder_text(holder))}). This report shows the '
            f"{data.n_finished:,} of {data.n_calls:,} calls finished at {written}; write it again for more.</div>"
        )
    elif data.in_progress:
        parts.append(
            f'<div class="banner live">{data.n_calls - data.n_finished:,} of {data.n_calls:,} calls have not '
            f"finished and nothing is running them: <code>hog-batch resume {_e(data.root)}</code> finishes them.</div>"
        )
    rows = []
    for job in data.jobs:
        status = job.frame["status"]
        rows.append(
            f"<tr><td>{_e(job.name)}</td><td class='n'>{len(job.frame):,}</td>"
            f"<td class='n'>{int((status == 'succeeded').sum()):,}</td><td class='n'>{int((status == 'failed').sum()):,}</td>"
            f"<td>{_e(', '.join(job.varying) or '(none)')}</td><td>{_e(_listed(job.results) or '(none numeric)')}</td></tr>"
        )
    parts.append(
        "<table><tr><th>job</th><th>calls</th><th>succeeded</th><th>failed</th><th>swept parameters</th>"
        "<th>numeric results</th></tr>" + "".join(rows) + "</table>"
    )
    return "".join(parts)


def _failures(groups: list[FailureGroup]) -> str:
    if not groups:
        return '<p class="sub">No call failed.</p>'
    total = sum(g.count for g in groups)
    rows = []
    for g in groups[:MAX_GROUPS]:
        params = ", ".join(f"{k}={number_text(v)}" for k, v in g.example_params.items())
        rows.append(
            f"<tr><td class='n'>{g.count:,}</td><td>{_e(g.job)}</td><td><code>{_e(g.error_type)}</code></td>"
            f"<td>{_e(g.first_line)}<details><summary>example: call {g.example_call}"
            f"{' (' + _e(params) + ')' if params else ''}</summary><pre>{_e(g.traceback)}</pre></details></td></tr>"
        )
    more = (
        (
            f'<p class="note">...and {len(groups) - MAX_GROUPS:,} more kinds of failure '
            f"({sum(g.count for g in groups[MAX_GROUPS:]):,} calls)</p>"
        )
        if len(groups) > MAX_GROUPS
        else ""
    )
    return (
        f'<p class="sub">{total:,} failed calls in {len(groups):,} kind(s), most frequent first. '
        "The red x marks in the figures above show where they fall among the parameters.</p>"
        "<table><tr><th>calls</th><th>job</th><th>error</th><th>first line, and one example</th></tr>"
        + "".join(rows)
        + "</table>"
        + more
    )


def _provenance(items: list[tuple[str, str]], manifest_text: str) -> str:
    entries = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return (
        f'<div class="card"><dl>{entries}</dl></div><details><summary>the manifest as the run saw it</summary>'
        f"<pre>{_e(manifest_text)}</pre></details>"
    )


def render_page(
    data: ReportData,
    results: dict[str, list[ReportFigure]],
    timing: list[ReportFigure],
    groups: list[FailureGroup],
    provenance: list[tuple[str, str]],
    notes: list[str],
    summary: list[tuple[str, str]] = (),
    left_out: dict[str, str] | None = None,
    files: str = "",
) -> str:
    """The whole page; the file size is filled in by the caller (``SIZE_MARK``)."""
    from plotly.offline import get_plotlyjs

    index = 0
    body: list[str] = []
    body.append("<h2 id='results'>Parameters → results</h2>")
    for job_name, figures in results.items():
        if len(results) > 1:
            body.append(f"<h3>job {_e(job_name)}</h3>")
        if not figures:
            body.append(
                f'<p class="sub">No numeric results to plot yet for {_e(job_name)}: the figures show numbers '
                "that calls returned (a number, or the numeric values of a returned dict).</p>"
            )
        for figure in figures:
            body.append(_plot(figure, index))
            index += 1
        if (left_out or {}).get(job_name):
            body.append(f'<p class="note left-out">{_e(left_out[job_name])}</p>')
    body.append(f"<h2 id='failures'>Failures</h2>{_failures(groups)}")
    if files:
        body.append(files)
    body.append("<h2 id='time'>Time</h2>")
    if not timing:
        body.append('<p class="sub">No call has finished yet.</p>')
    for figure in timing:
        body.append(_plot(figure, index))
        index += 1
    body.append(f"<h2 id='provenance'>Provenance</h2>{_provenance(provenance, data.manifest_text)}")
    written = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data.generated_at))
    general = "".join(f"<li>{_e(n)}</li>" for n in notes)
    footer = (
        f"<footer>{'<ul>' + general + '</ul>' if general else ''}Written {written} by hog-batch {_e(__version__)} "
        f"with Plotly {_e(version('plotly'))}; this file is {SIZE_MARK} and needs no network.</footer>"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_e(data.name)}: hog-batch report</title>"
        f"<style>{_STYLE}</style><script>{_ERROR_CATCHER}</script><script>{get_plotlyjs()}</script></head>"
        f"<body><main><h1>{_e(data.name)}</h1><p class='sub'>{_e(data.root)}</p>"
        "<nav><a href='#results'>Parameters → results</a><a href='#failures'>Failures</a><a href='#time'>Time</a>"
        "<a href='#provenance'>Provenance</a></nav>"
        f"<div class='banner broken' id='broken'></div>{_summary(data, list(summary))}{''.join(body)}{footer}</main>"
        f'<script type="application/json" id="plot-template">{_script_json(_template_json())}</script>'
        f"<script>{_RENDER}</script></body></html>\n"
    )
