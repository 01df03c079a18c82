// Draws the device history with uPlot from the data-series attribute (JSON, set by the server).
"use strict";
(function () {
  const el = document.getElementById("chart");
  if (!el || typeof uPlot === "undefined") return;
  const data = JSON.parse(el.dataset.series || "{}");
  const names = Object.keys(data.series || {});
  if (!data.t || data.t.length === 0 || names.length === 0) {
    el.textContent = "No numeric readings to chart.";
    return;
  }
  const colours = ["#1f5fbf", "#b42318", "#17803d", "#8a4baf", "#c36a00", "#0e7c86"];
  const series = [{}].concat(names.map((n, i) => ({ label: n, stroke: colours[i % colours.length] })));
  const columns = [data.t].concat(names.map((n) => data.series[n]));
  const width = () => Math.max(280, el.clientWidth || 600);
  const plot = new uPlot({ width: width(), height: 300, series: series }, columns, el);
  window.addEventListener("resize", () => plot.setSize({ width: width(), height: 300 }));
  el.dataset.drawn = "true";
})();
