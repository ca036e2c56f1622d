// The single-page app: a tiny router over four pages, and the state they share
// (the run selection), exposed as window.__runstore for tests and debugging.

import { RunsPage } from "./runs.js";
import { ExplorerPage } from "./explorer.js";
import { RunPage } from "./run.js";
import { ComparePage } from "./compare.js";

const state = {
  // Selected runs: explicit ids, or "every run matching this query".
  selection: { ids: new Set(JSON.parse(sessionStorage.getItem("runstore.ids") || "[]")),
               allMatching: sessionStorage.getItem("runstore.all") },
  q: sessionStorage.getItem("runstore.q") || "",
  saveSelection() {
    sessionStorage.setItem("runstore.ids", JSON.stringify([...this.selection.ids]));
    if (this.selection.allMatching === null) sessionStorage.removeItem("runstore.all");
    else sessionStorage.setItem("runstore.all", this.selection.allMatching);
    sessionStorage.setItem("runstore.q", this.q);
    updateSelectionInfo();
  },
  // What the explorer and compare pages should show: {runs: [...]} or {q: "..."}.
  selectionSpec() {
    if (this.selection.allMatching !== null) return { q: this.selection.allMatching };
    if (this.selection.ids.size) return { runs: [...this.selection.ids] };
    return { q: this.q };
  },
};

const hook = (window.__runstore = { page: null, state, runs: {}, explorer: { charts: {} }, run: {}, compare: {} });

function updateSelectionInfo() {
  const el = document.getElementById("selection-info");
  const s = state.selection;
  el.textContent = s.allMatching !== null ? `all runs matching ${s.allMatching || "(everything)"} selected`
    : s.ids.size ? `${s.ids.size} run${s.ids.size === 1 ? "" : "s"} selected` : "";
}

let current = null;

export function navigate(url, replace = false) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

function route() {
  const url = new URL(location.href);
  const path = url.pathname;
  if (current && current.destroy) current.destroy();
  const main = document.getElementById("main");
  main.replaceChildren();
  let page;
  let name;
  if (path.startsWith("/run/")) {
    name = "run";
    page = new RunPage(main, decodeURIComponent(path.slice(5)), state, hook);
  } else if (path === "/explorer") {
    name = "explorer";
    page = new ExplorerPage(main, url.searchParams, state, hook);
  } else if (path === "/compare") {
    name = "compare";
    page = new ComparePage(main, url.searchParams, state, hook);
  } else {
    name = "runs";
    page = new RunsPage(main, url.searchParams, state, hook, navigate);
  }
  hook.page = name;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  current = page;
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
updateSelectionInfo();
route();
