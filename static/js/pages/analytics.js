// Analytics: the charts beside the server-rendered tables, from the same figures (a JSON data block).
import { bars, columns, grouped } from "../components/charts.js";

const data = JSON.parse(document.getElementById("analytics-data").textContent);
const overall = data.overall;
const CAUSE_LABELS = {
  camera_refused: "Camera refused", no_camera: "No camera", unsupported_browser: "Unsupported browser",
  camera_busy: "Camera busy", ice_failure: "ICE failure", expired_unused: "Expired unused",
  gave_up: "Left before camera",
};
const pct = (rate) => `${Math.round(rate * 100)}%`;

const SHORT_STEPS = ["Created", "Link opened", "Camera allowed", "Media connected", "30 s or more"];
bars(document.getElementById("chart-funnel"), SHORT_STEPS, overall.funnel.map((s) => s.count),
  { suffix: (value, i) => `${value} (${pct(overall.funnel[i].rate)})` });
const causes = Object.keys(CAUSE_LABELS);
bars(document.getElementById("chart-causes"), causes.map((c) => CAUSE_LABELS[c]), causes.map((c) => overall.failures[c]),
  { colour: "#ff453a" });
// In a fixed order with a fixed colour each (the data block's keys come sorted).
const OUTCOMES = [["resolved", "#34c759"], ["escalated", "#bf5af2"], ["follow_up", "#ffb020"],
  ["no_show", "#a7adba"], ["abandoned", "#ff9f0a"], ["technical_failure", "#ff453a"]];
columns(document.getElementById("chart-outcomes"), OUTCOMES.map(([o]) => o.replace("_", " ")),
  OUTCOMES.map(([o]) => overall.outcomes[o] ?? 0), OUTCOMES.map(([, colour]) => colour));
columns(document.getElementById("chart-csat"), ["1 ★", "2 ★", "3 ★", "4 ★", "5 ★"], [1, 2, 3, 4, 5].map((n) => overall.csat.distribution[String(n)]),
  ["#ff453a", "#ff9f0a", "#ffb020", "#64d2ff", "#34c759"]);
grouped(document.getElementById("chart-agents"), data.by_agent.map((a) => a.agent), [
  { name: "Sessions", values: data.by_agent.map((a) => a.sessions) },
  { name: "Connected", values: data.by_agent.map((a) => a.funnel[3].count) },
  { name: "Resolved", values: data.by_agent.map((a) => a.outcomes.resolved) },
  { name: "To Tier 3", values: data.by_agent.map((a) => a.escalations_to_tier3) },
]);
