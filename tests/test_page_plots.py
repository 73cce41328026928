"""The dashboard's plots (labloop/web/static/plot.js) drawn in headless Chromium and measured: the y axis title
never over the tick labels, trial numbers as whole-number ticks, nothing outside the picture, the legend clear of
the data. Real browser, no server: the script is loaded from the package into a blank page."""

from __future__ import annotations

from importlib import resources

from test_dashboard_browser import browser  # noqa: F401 - a fixture

MEASURE = """
const box = document.getElementById("c");
const svg = window.LabloopPlot.chart(box, arguments[0], arguments[1]);
const vb = svg.viewBox.baseVal, r = e => e.getBBox();
const over = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
const ticks = [...svg.querySelectorAll("text.tick")].filter(t => !t.closest("g.legend"));
const ylabel = [...svg.querySelectorAll("text.label")].find(t => t.getAttribute("transform"));
const yl = ylabel.getBBox();  /* rotated: the box before rotation, turned by hand */
const cx = +ylabel.getAttribute("x"), cy = +ylabel.getAttribute("y");
const yBox = {x: cx - yl.height / 2, y: cy - yl.width / 2, width: yl.height, height: yl.width};
const axis = [...svg.querySelectorAll("line.axis")].map(r);
const top = Math.min(...axis.map(b => b.y));
const marks = [...svg.querySelectorAll("g.series circle, g.series polyline")].map(r);
const all = [...svg.querySelectorAll("text, circle, rect")].filter(e => e !== ylabel)
  .map(e => Object.assign(r(e), {what: e.tagName + " " + (e.textContent || "")})).concat([Object.assign(yBox, {what: "ylabel"})]);
return {
  labelOverTicks: ticks.some(t => over(r(t), yBox)),
  xTicks: [...svg.querySelectorAll("text.tick.x")].map(t => t.textContent),
  yTicks: [...svg.querySelectorAll("text.tick:not(.x)")].filter(t => !t.closest("g.legend")).map(t => t.textContent),
  clipped: all.filter(b => b.x < -0.5 || b.y < -0.5 || b.x + b.width > vb.width + 0.5 || b.y + b.height > vb.height + 0.5)
    .map(b => `${b.what} at ${b.x.toFixed(1)},${b.y.toFixed(1)} ${b.width.toFixed(1)}x${b.height.toFixed(1)}`),
  legendOverData: [...svg.querySelectorAll("g.legend")].some(g => r(g).y + r(g).height > top),
  marksAbove: marks.filter(b => b.y < top - 4).length,
};
"""


def _page(driver, tmp_path):
    js = resources.files("labloop.web") / "static" / "plot.js"
    css = resources.files("labloop.web") / "static" / "style.css"
    page = tmp_path / "plot.html"
    page.write_text(
        f'<!doctype html><html><head><link rel="stylesheet" href="file://{css}">'
        f'<script src="file://{js}"></script></head><body><div id="c" style="width:520px"></div>'
        "</body></html>"
    )
    driver.get(page.as_uri())


def test_convergence_plot_layout(browser, tmp_path):  # noqa: F811 - a fixture imported above
    _page(browser, tmp_path)
    pts = [[n, 12000.0 + 350.0 * ((n * 7) % 5), f"trial {n}"] for n in range(1, 8)]
    best = [[n, 12000.0] for n in range(1, 8)]
    series = [
        {"name": "sheet_resistance (trial)", "points": pts, "kind": "dots", "cls": "measured"},
        {"name": "best so far", "points": best, "kind": "line", "cls": "best"},
    ]
    got = browser.execute_script(
        MEASURE,
        series,
        {
            "xlabel": "trial",
            "integerX": True,
            "ylabel": "sheet_resistance / ohm/sq",
            "hlines": [{"y": 13500.0, "label": "target 1.35e+4"}],
        },
    )
    assert not got["labelOverTicks"]
    assert got["xTicks"] and all(t.isdigit() for t in got["xTicks"]), got["xTicks"]
    assert got["clipped"] == []
    assert not got["legendOverData"] and got["marksAbove"] == 0


def test_a_wide_legend_wraps_above_the_data(browser, tmp_path):  # noqa: F811 - a fixture imported above
    _page(browser, tmp_path)
    series = [
        {
            "name": f"chamber{i}_chamber_pressure_setpoint_readback",
            "points": [[t, t * t] for t in range(30)],
            "kind": "line",
        }
        for i in range(4)
    ]
    got = browser.execute_script(MEASURE, series, {"xlabel": "s", "ylabel": "mTorr", "height": 150})
    assert got["clipped"] == [] and not got["legendOverData"] and not got["labelOverTicks"]


def test_a_few_trials_get_whole_number_ticks(browser, tmp_path):  # noqa: F811 - a fixture imported above
    _page(browser, tmp_path)
    series = [{"name": "r (trial)", "points": [[1, 5.0], [2, 4.0], [3, 4.5]], "kind": "dots", "cls": "measured"}]
    got = browser.execute_script(MEASURE, series, {"xlabel": "trial", "integerX": True, "ylabel": "r"})
    assert got["xTicks"] == ["1", "2", "3"]


def test_ticks_of_a_narrow_range_read_apart(browser, tmp_path):  # noqa: F811 - a fixture imported above
    """A pressure steady at 3.12 mTorr used to be labelled 3.12, 3.12, 3.12."""
    _page(browser, tmp_path)
    series = [{"name": "p", "points": [[t * 0.01, 3.1195 - t * 0.0001] for t in range(9)], "kind": "line"}]
    got = browser.execute_script(MEASURE, series, {"xlabel": "s", "ylabel": "mTorr", "height": 150})
    assert len(got["yTicks"]) >= 2 and len(set(got["yTicks"])) == len(got["yTicks"]), got["yTicks"]
