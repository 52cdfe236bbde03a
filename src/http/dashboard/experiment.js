// The experiment view: progress, the leaderboard (mean ± std over seeds per cell, sortable
// by any metric), the paired comparisons of the best cell against each other, the
// server-rendered plots (`…/plot.svg?kind=curves|leaderboard`, fetched with the token and
// shown from a blob: URL, hidden when the server has no plot endpoints), and each cell's jobs.
// Polled every two seconds while the experiment runs.

import { get, post, blob, isMissingRoute } from "./api.js";
import { formatNumber } from "./charts.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;

/** Leaderboard columns: [metric, heading]; `val_accuracy` or `val_r2` by the task. */
const METRICS = [
  ["best_val_loss", "best val loss", "the lowest validation loss of each run"],
  ["val_accuracy", "val acc", "validation accuracy at the best epoch"],
  ["val_r2", "val R²", "validation R² at the best epoch"],
  ["final_gap", "final gap", "validation loss − training loss at the last epoch"],
  ["epochs_to_best", "epochs to best", "the epoch of the lowest validation loss"],
  ["grad_ratio_first", "grad ratio, epoch 1", "first layer's gradient norm / last layer's, at epoch 1"],
  ["grad_ratio_final", "grad ratio, end", "first layer's gradient norm / last layer's, at the last epoch"],
  ["dead_fraction", "dead", "dead ReLU-family hidden units at the last epoch"],
  ["saturated_fraction", "saturated", "saturated sigmoid/tanh hidden units at the last epoch"],
];
const HIGHER_IS_BETTER = ["val_accuracy", "val_r2"];

export class ExperimentView {
  constructor({ openJob }) {
    this.root = $("experiment-view");
    this.openJob = openJob;
    this.timer = 0;
    this.sort = null;
    this.order = null;
    this.plotsMissing = false;
    this.urls = {};
    $("exp-close").addEventListener("click", () => this.close());
    $("exp-cancel").addEventListener("click", () => this.cancel());
    $("exp-curves-metric").addEventListener("change", () => this.plot("curves"));
  }

  open(id) {
    this.close();
    this.id = id;
    this.sort = null;
    this.order = null;
    this.done = -1;
    this.root.hidden = false;
    this.root.dataset.experiment = id;
    this.refresh();
  }

  close() {
    clearTimeout(this.timer);
    this.id = null;
    this.root.hidden = true;
  }

  async refresh() {
    clearTimeout(this.timer);
    const id = this.id;
    if (!id) return;
    let query = "";
    if (this.sort) query = `?sort=${encodeURIComponent(this.sort)}&order=${this.order}`;
    try {
      const view = await get(`/v1/experiments/${id}${query}`);
      if (this.id !== id) return;
      this.render(view);
      if (view.state === "running") this.timer = setTimeout(() => this.refresh(), POLL_MS);
    } catch (error) {
      if (this.id !== id) return;
      $("exp-summary").textContent = error.message;
      this.timer = setTimeout(() => this.refresh(), POLL_MS * 2);
    }
  }

  async cancel() {
    try {
      this.render(await post(`/v1/experiments/${this.id}/cancel`));
    } catch (error) {
      $("exp-summary").textContent = error.message;
    }
  }

  render(view) {
    this.view = view;
    this.root.dataset.state = view.state;
    $("exp-name").textContent = view.name || view.id;
    const badge = $("exp-state");
    badge.textContent = view.state;
    badge.className = `badge ${view.state}`;
    $("exp-cancel").hidden = view.state !== "running";
    const p = view.progress;
    $("exp-progress").value = p.fraction;
    $("exp-summary").textContent = [
      `${view.task}`, `${view.cells.length} cells × ${view.seeds.length} seeds`,
      `${p.done} / ${p.total} jobs done`, `${p.succeeded} succeeded`,
      p.failed ? `${p.failed} failed` : "", p.cancelled ? `${p.cancelled} cancelled` : "",
      p.interrupted ? `${p.interrupted} interrupted` : "",
      `${p.running} running`, `${p.queued} queued`,
    ].filter(Boolean).join(" · ");
    this.renderLeaderboard(view.leaderboard);
    this.renderComparisons(view.leaderboard, view.cells);
    this.renderCells(view.cells);
    if (p.done !== this.done) {
      this.done = p.done;
      this.plot("curves");
      this.plot("leaderboard");
    }
  }

  renderLeaderboard(board) {
    this.sort = board.sort;
    this.order = board.order;
    const rows = board.rows;
    const columns = METRICS.filter(([m]) => rows.some((r) => r[m] !== undefined));
    const head = $("leaderboard").querySelector("thead");
    const tr = document.createElement("tr");
    for (const text of ["#", "cell", "runs"]) tr.append(th(text));
    for (const [metric, heading, title] of columns) {
      const cell = th(heading + (metric === board.sort ? (board.order === "asc" ? " ▲" : " ▼") : ""));
      cell.className = "sortable";
      cell.title = `${title}; click to sort`;
      cell.dataset.metric = metric;
      cell.addEventListener("click", () => this.sortBy(metric));
      tr.append(cell);
    }
    head.replaceChildren(tr);
    const body = $("leaderboard").querySelector("tbody");
    body.replaceChildren();
    rows.forEach((row, rank) => {
      const r = body.insertRow();
      r.insertCell().textContent = String(rank + 1);
      r.insertCell().textContent = row.label;
      r.insertCell().textContent = `${row.succeeded} / ${row.runs}`;
      for (const [metric] of columns) r.insertCell().textContent = meanStd(row[metric]);
    });
    $("leaderboard").dataset.rows = String(rows.length);
  }

  sortBy(metric) {
    if (this.sort === metric) this.order = this.order === "asc" ? "desc" : "asc";
    else this.order = HIGHER_IS_BETTER.includes(metric) ? "desc" : "asc";
    this.sort = metric;
    this.done = -1; // the bar chart follows the sort
    this.refresh();
  }

  renderComparisons(board, cells) {
    const label = (i) => (cells[i] ? cells[i].label : `cell ${i}`);
    const head = $("comparisons").querySelector("thead");
    const tr = document.createElement("tr");
    for (const text of ["best", "other", "metric", "n", "mean diff", "test", "p", "Wilcoxon p", "note"]) tr.append(th(text));
    head.replaceChildren(tr);
    const body = $("comparisons").querySelector("tbody");
    body.replaceChildren();
    for (const c of board.comparisons || []) {
      const r = body.insertRow();
      r.insertCell().textContent = label(c.best);
      r.insertCell().textContent = label(c.other);
      r.insertCell().textContent = c.metric;
      r.insertCell().textContent = String(c.n);
      r.insertCell().textContent = formatNumber(c.mean_difference);
      r.insertCell().textContent = c.test ? `${c.test}${c.statistic !== null && c.statistic !== undefined ? `, statistic ${formatNumber(c.statistic)}` : ""}${c.df ? `, df = ${c.df}` : ""}` : "–";
      r.insertCell().textContent = formatNumber(c.p_value);
      r.insertCell().textContent = c.wilcoxon ? formatNumber(c.wilcoxon.p_value) : "–";
      r.insertCell().textContent = c.note || "";
    }
  }

  renderCells(cells) {
    const body = $("exp-cells").querySelector("tbody");
    body.replaceChildren();
    for (const cell of cells) {
      const r = body.insertRow();
      r.insertCell().textContent = cell.label;
      r.insertCell().textContent = cell.model_name;
      const jobs = r.insertCell();
      for (const job of cell.jobs) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = `chip ${job.state}`;
        b.textContent = `seed ${job.seed}`;
        b.title = `${job.state}: open job ${job.job}`;
        b.addEventListener("click", () => this.openJob(job.job));
        jobs.append(b);
      }
    }
  }

  /** Fetches one plot with the token and shows it; hides the plots when the server has none. */
  async plot(kind) {
    if (this.plotsMissing || !this.id) return;
    const img = $(kind === "curves" ? "exp-curves" : "exp-bars");
    const error = $(kind === "curves" ? "exp-curves-error" : "exp-bars-error");
    const metric = kind === "curves" ? $("exp-curves-metric").value : this.sort || "best_val_loss";
    const path = `/v1/experiments/${this.id}/plot.svg?kind=${kind}&metric=${encodeURIComponent(metric)}`;
    try {
      const svg = await blob(path);
      if (this.urls[kind]) URL.revokeObjectURL(this.urls[kind]);
      this.urls[kind] = URL.createObjectURL(svg);
      img.src = this.urls[kind];
      img.hidden = false;
      error.textContent = "";
    } catch (e) {
      if (isMissingRoute(e)) {
        this.plotsMissing = true;
        $("exp-plots").hidden = true;
        $("exp-plots-missing").hidden = false;
        return;
      }
      img.hidden = true;
      error.textContent = e.message;
    }
  }
}

function th(text) {
  const cell = document.createElement("th");
  cell.textContent = text;
  return cell;
}

function meanStd(stat) {
  if (!stat || stat.mean === null || stat.mean === undefined) return "–";
  return stat.std === null || stat.std === undefined
    ? formatNumber(stat.mean)
    : `${formatNumber(stat.mean)} ± ${formatNumber(stat.std)}`;
}
