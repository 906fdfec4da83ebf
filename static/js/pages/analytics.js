// Analytics: the charts beside the server-rendered tables, from the same figures (a JSON data block).
import { bars, columns, grouped } from "../components/charts.js";

const data = JSON.parse(document.getElementById("analytics-data").textContent);
const overall = data.overall;
const CAUSE_LABELS = {
  camera_refused: "Camera refused", no_camera: "No camera", unsupported_browser: "Unsupported browser",
  camera_busy: "Camera busy or failed", ice_failure: "ICE failure", expired_unused: "Expired unused",
  gave_up: "Ended before the camera",
};
const pct = (rate) => `${Math.round(rate * 100)}%`;

bars(document.getElementById("chart-funnel"), overall.funnel.map((s) => s.label), overall.funnel.map((s) => s.count),
  { suffix: (value, i) => `${value} (${pct(overall.funnel[i].rate)})` });
const causes = Object.keys(CAUSE_LABELS);
bars(document.getElementById("chart-causes"), causes.map((c) => CAUSE_LABELS[c]), causes.map((c) => overall.failures[c]),
  { colour: "#ff453a" });
const outcomes = Object.keys(overall.outcomes);
columns(document.getElementById("chart-outcomes"), outcomes.map((o) => o.replace("_", " ")), outcomes.map((o) => overall.outcomes[o]),
  ["#34c759", "#bf5af2", "#ffb020", "#a7adba", "#ff9f0a", "#ff453a"]);
columns(document.getElementById("chart-csat"), ["1 ★", "2 ★", "3 ★", "4 ★", "5 ★"], [1, 2, 3, 4, 5].map((n) => overall.csat.distribution[String(n)]),
  ["#ff453a", "#ff9f0a", "#ffb020", "#64d2ff", "#34c759"]);
grouped(document.getElementById("chart-agents"), data.by_agent.map((a) => a.agent), [
  { name: "Sessions", values: data.by_agent.map((a) => a.sessions) },
  { name: "Connected", values: data.by_agent.map((a) => a.funnel[3].count) },
  { name: "Resolved", values: data.by_agent.map((a) => a.outcomes.resolved) },
  { name: "To Tier 3", values: data.by_agent.map((a) => a.escalations_to_tier3) },
]);
