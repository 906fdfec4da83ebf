// The ticket's record: local times and a print button (the print view is the stylesheet's).
import { localTimes } from "../components/times.js";

localTimes();
document.getElementById("print").addEventListener("click", () => window.print());
