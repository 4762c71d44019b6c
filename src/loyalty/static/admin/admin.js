// The admin's own script, loaded with <script defer> (no inline scripts: the
// Content-Security-Policy refuses them). htmx is configured from the
// <meta name="htmx-config"> of base.html and sends the CSRF token of
// <body hx-headers> with every request.
(function () {
  "use strict";

  // <form data-confirm="Disable x?">: ask before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);

  // An htmx request the server refused: say so where the page shows messages.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail && event.detail.xhr ? event.detail.xhr.status : 0;
    showAlert(status === 403
      ? "Not allowed, or the page has expired: reload it and try again."
      : "The request failed (" + status + "). Reload the page and try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    showAlert("The server cannot be reached. Check the connection and try again.");
  });

  function showAlert(text) {
    var flash = document.getElementById("flash");
    if (!flash) return;
    var alert = document.createElement("p");
    alert.className = "alert";
    alert.setAttribute("role", "alert");
    alert.textContent = text;
    flash.replaceChildren(alert);
  }

  // Charts: <script type="application/json" id="chart-data"> holds
  //   {"days": ["2026-01-01", ...],
  //    "series": [{"label": "Issued", "values": [...], "color": "#2454d6", "axis": "left"}, ...]}
  // and <div id="chart"> receives a uPlot line chart (uPlot.iife.min.js must be loaded).
  // A value axis as wide as its longest label (uPlot's default cuts "10,000,000").
  function axisSize(self, values, axisIndex, cycleNumber) {
    var axis = self.axes[axisIndex];
    if (cycleNumber > 1) return axis._size;
    var longest = (values || []).reduce(function (found, value) {
      return String(value).length > found.length ? String(value) : found;
    }, "");
    self.ctx.font = axis.font[0];
    return Math.ceil(self.ctx.measureText(longest).width / window.devicePixelRatio) + 24;
  }

  function drawChart() {
    var source = document.getElementById("chart-data");
    var target = document.getElementById("chart");
    if (!source || !target || typeof window.uPlot !== "function") return;
    var data = JSON.parse(source.textContent || "{}");
    var days = (data.days || []).map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
    var series = data.series || [];
    var palette = ["#2454d6", "#0b7a3e", "#b42318", "#8a5cf5", "#d97706"];
    var options = {
      width: Math.max(target.clientWidth - 20, 320),
      height: 320,
      scales: { x: { time: true } },
      // The days are UTC days: label them so whatever the browser's time zone.
      tzDate: function (seconds) { return window.uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"); },
      axes: [
        {},
        { scale: "points", size: axisSize },
        { scale: "outstanding", side: 1, size: axisSize, grid: { show: false } }
      ],
      series: [{}].concat(series.map(function (one, index) {
        return {
          label: one.label,
          scale: one.axis === "right" ? "outstanding" : "points",
          stroke: one.color || palette[index % palette.length],
          width: 2
        };
      }))
    };
    if (chart) chart.destroy();
    target.replaceChildren();
    chart = new window.uPlot(options, [days].concat(series.map(function (one) { return one.values; })), target);
  }

  var chart = null;
  window.addEventListener("resize", function () {
    var target = document.getElementById("chart");
    if (chart && target) chart.setSize({ width: Math.max(target.clientWidth - 20, 320), height: 320 });
  });

  document.addEventListener("DOMContentLoaded", drawChart);
  document.addEventListener("htmx:afterSettle", drawChart);
})();
