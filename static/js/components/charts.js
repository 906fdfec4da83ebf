// Charts for the staff pages: Apache ECharts (static/vendor/echarts, Apache-2.0), drawn on canvas in
// the page's dark theme. Every chart has its numbers in a table beside it; the chart is for the glance.
import * as echarts from "../../vendor/echarts/echarts.esm.min.js";

const TEXT = "#f2f4f8";
const MUTED = "#a7adba";
const GRID = "#2a2f3a";
export const COLOURS = ["#0a84ff", "#34c759", "#ffb020", "#ff453a", "#bf5af2", "#64d2ff", "#ff9f0a"];

function base() {
  return {
    backgroundColor: "transparent",
    color: COLOURS,
    textStyle: { color: TEXT, fontFamily: "system-ui, sans-serif" },
    grid: { left: 28, right: 72, top: 24, bottom: 8, containLabel: true },
    tooltip: { trigger: "item", confine: true },
    animation: !window.matchMedia("(prefers-reduced-motion: reduce)").matches,
  };
}

function mount(element, option) {
  const chart = echarts.init(element, null, { renderer: "canvas" });
  chart.setOption({ ...base(), ...option });
  new ResizeObserver(() => chart.resize()).observe(element);
  document.fonts?.ready.then(() => chart.resize()); // labels measured again in the page's own font
  return chart;
}

const axisLabel = { color: MUTED };
const splitLine = { lineStyle: { color: GRID } };

// Horizontal bars, top to bottom in the given order: a funnel or a list of causes.
export function bars(element, labels, values, { colour = COLOURS[0], suffix = (v) => String(v) } = {}) {
  return mount(element, {
    xAxis: { type: "value", minInterval: 1, axisLabel, splitLine },
    yAxis: { type: "category", data: [...labels].reverse(), axisLabel: { color: TEXT }, axisTick: { show: false } },
    series: [{
      type: "bar", data: [...values].reverse(), itemStyle: { color: colour, borderRadius: [0, 4, 4, 0] },
      label: { show: true, position: "right", color: TEXT, formatter: ({ dataIndex }) => suffix(values[values.length - 1 - dataIndex], values.length - 1 - dataIndex) },
      barMaxWidth: 26,
    }],
  });
}

// Vertical bars with one colour per category (CSAT 1..5, outcomes).
export function columns(element, labels, values, colours = COLOURS) {
  return mount(element, {
    xAxis: { type: "category", data: labels, axisLabel: { color: TEXT, interval: 0, rotate: labels.some((l) => l.length > 10) ? 20 : 0 } },
    yAxis: { type: "value", minInterval: 1, axisLabel, splitLine },
    series: [{
      type: "bar", data: values.map((value, i) => ({ value, itemStyle: { color: colours[i % colours.length], borderRadius: [4, 4, 0, 0] } })),
      label: { show: true, position: "top", color: TEXT }, barMaxWidth: 40,
    }],
  });
}

// Several series over the same categories (agents: sessions, connected, escalations).
export function grouped(element, categories, series) {
  return mount(element, {
    legend: { textStyle: { color: TEXT }, top: 0 },
    grid: { left: 8, right: 16, top: 32, bottom: 8, containLabel: true },
    tooltip: { trigger: "axis", confine: true },
    xAxis: { type: "category", data: categories, axisLabel: { color: TEXT } },
    yAxis: { type: "value", minInterval: 1, axisLabel, splitLine },
    series: series.map(({ name, values }) => ({ name, type: "bar", data: values, barMaxWidth: 28, label: { show: true, position: "top", color: TEXT } })),
  });
}
