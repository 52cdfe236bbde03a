// The dashboard: lists of jobs, experiments, models and datasets (refreshed every few
// seconds while the tab is visible), the train and predict forms, and the job and experiment
// views. Everything goes through the public API with the token the user gives.

import { get, post, newest, setToken, token, ApiError, isMissingRoute } from "./api.js";
import { formatNumber } from "./charts.js";
import { JobView } from "./job.js";
import { ExperimentView } from "./experiment.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 3000;
const LIST_SIZE = 25;
const QUICK_DATASET = "spirals (dashboard)";
const QUICK_MODEL = "dashboard-spirals-relu";

const state = { datasets: [], models: [], experimentsMissing: false, timer: 0, busy: false, again: false };

const jobView = new JobView({ onChange: () => refresh() });
const experimentView = new ExperimentView({ openJob: (id) => openJob(id) });

function openJob(id) {
  jobView.open(id);
  $("job-view").scrollIntoView({ block: "nearest" });
}

// ---- token and server status -----------------------------------------------------------

$("token").value = token();
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token").value.trim());
  refresh();
});
$("token-forget").addEventListener("click", () => {
  $("token").value = "";
  setToken("");
  refresh();
});

function status(text, kind) {
  const badge = $("server-status");
  badge.textContent = text;
  badge.className = `badge ${kind}`;
}

// ---- lists -------------------------------------------------------------------------------

/** Reloads every list; one refresh at a time (a call meanwhile runs once more after it). */
async function refresh() {
  if (state.busy) {
    state.again = true;
    return;
  }
  state.busy = true;
  clearTimeout(state.timer);
  try {
    await load();
    status("connected", "ok");
    document.body.dataset.ready = "true";
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      status(token() ? "token refused" : "token needed", "bad");
    } else {
      status(error instanceof ApiError ? error.message : "server unreachable", "bad");
    }
  } finally {
    state.busy = false;
  }
  if (state.again) {
    state.again = false;
    refresh();
  } else if (document.visibilityState !== "hidden") {
    state.timer = setTimeout(refresh, REFRESH_MS);
  }
}

async function load() {
  // The default page size of the listings; the newest of each come first.
  const [datasets, models, jobs] = await Promise.all([
    newest("/v1/datasets", 100),
    newest("/v1/models", 100),
    newest("/v1/jobs", LIST_SIZE),
  ]);
  state.datasets = datasets.items;
  state.models = models.items;
  renderJobs(jobs);
  renderModels(models);
  renderDatasets(datasets);
  fillSelects();
  await refreshExperiments();
}

async function refreshExperiments() {
  if (state.experimentsMissing) return;
  try {
    renderExperiments(await newest("/v1/experiments", LIST_SIZE));
  } catch (error) {
    if (!isMissingRoute(error)) throw error;
    // A server without the experiments API: say so once and stop asking.
    state.experimentsMissing = true;
    $("experiments-missing").hidden = false;
    $("experiments-list").hidden = true;
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") refresh();
  else clearTimeout(state.timer);
});

/** Fills `table` with one clickable row per item: `cells(item)` gives the cells' content. */
function fillList(table, page, cells, onClick, empty) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  table.dataset.total = String(page.total);
  if (page.items.length === 0) {
    body.insertRow().insertCell().textContent = empty;
    return;
  }
  for (const item of page.items) {
    const row = body.insertRow();
    row.dataset.id = item.id;
    for (const content of cells(item)) {
      const cell = row.insertCell();
      if (content instanceof Node) cell.append(content);
      else cell.textContent = content;
    }
    if (onClick) {
      row.className = "clickable";
      row.tabIndex = 0;
      row.addEventListener("click", () => onClick(item));
      row.addEventListener("keydown", (e) => e.key === "Enter" && onClick(item));
    }
  }
  if (page.total > page.items.length) {
    body.insertRow().insertCell().textContent = `… and ${page.total - page.items.length} older`;
  }
}

function badge(text) {
  const span = document.createElement("span");
  span.className = `badge ${text}`;
  span.textContent = text;
  return span;
}

function renderJobs(page) {
  fillList($("jobs-list"), page, (job) => [
    job.model_name,
    badge(job.state),
    `${job.progress.epoch}/${job.progress.epochs}`,
    job.latest ? formatNumber(job.latest.val_loss ?? job.latest.train_loss) : "",
  ], (job) => openJob(job.id), "no jobs yet");
}

function renderExperiments(page) {
  fillList($("experiments-list"), page, (exp) => [
    exp.name || exp.id.slice(0, 8),
    badge(exp.state),
    exp.progress ? `${exp.progress.done}/${exp.progress.total}` : "",
  ], (exp) => experimentView.open(exp.id), "no experiments yet");
}

function renderModels(page) {
  fillList($("models-list"), page, (m) => [
    m.name,
    m.layers.join("-"),
    [...new Set(m.activations)].join(","),
    m.versions.length ? `v${m.versions[m.versions.length - 1].version}` : "untrained",
  ], (m) => {
    $("predict-form").elements.model.value = m.name;
    $("train-form").elements.model.value = m.name;
  }, "no models yet");
}

function renderDatasets(page) {
  fillList($("datasets-list"), page, (d) => [
    d.name || d.id.slice(0, 8),
    d.task,
    `${d.rows}×${d.features}`,
    d.classes ? `${d.classes.length} cl.` : "",
  ], (d) => {
    $("train-form").elements.dataset.value = d.id;
  }, "no datasets yet");
}

/** Refills a select with [value, text] options, keeping its choice when it is still there;
 * `empty` is shown (and nothing can be chosen) when there are none. */
function fillSelect(select, options, empty) {
  const chosen = select.value;
  if (options.length === 0) {
    select.replaceChildren(new Option(empty, ""));
    return;
  }
  select.replaceChildren(...options.map(([value, text]) => new Option(text, value)));
  if (options.some(([value]) => value === chosen)) select.value = chosen;
}

function fillSelects() {
  const datasets = state.datasets.map((d) => [d.id, `${d.name || d.id.slice(0, 8)} (${d.rows}×${d.features})`]);
  const models = state.models.map((m) => [m.name, `${m.name} (${m.layers.join("-")})`]);
  const trained = state.models.filter((m) => m.versions.length).map((m) => [m.name, `${m.name} (v${m.versions[m.versions.length - 1].version})`]);
  fillSelect($("train-form").elements.dataset, datasets, "no datasets yet");
  fillSelect($("train-form").elements.model, models, "no models yet");
  fillSelect($("predict-form").elements.model, trained, "no trained model yet");
}

// ---- train -------------------------------------------------------------------------------

function trainingRequest(form, model, dataset) {
  return {
    model, dataset,
    epochs: Number(form.elements.epochs.value),
    batch_size: Number(form.elements.batch_size.value),
    optimizer: { kind: "adam", learning_rate: Number(form.elements.learning_rate.value) },
    validation_split: 0.2,
  };
}

async function startJob(body) {
  const job = await post("/v1/jobs", body);
  openJob(job.id);
  refresh();
}

$("train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("train-error").textContent = "";
  try {
    await startJob(trainingRequest(form, form.elements.model.value, form.elements.dataset.value));
  } catch (error) {
    $("train-error").textContent = error.message;
  }
});

/** Spirals and a small ReLU network, each made once (found again by name), then a job. */
$("quick-spirals").addEventListener("click", async () => {
  const form = $("train-form");
  $("train-error").textContent = "";
  try {
    let dataset = state.datasets.find((d) => d.name === QUICK_DATASET);
    if (!dataset) {
      dataset = await post("/v1/datasets", {
        name: QUICK_DATASET,
        generator: { kind: "spirals", samples: 600, classes: 3, noise: 0.1, seed: 1 },
      });
    }
    try {
      await get(`/v1/models/${QUICK_MODEL}`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      await post("/v1/models", { name: QUICK_MODEL, layers: [2, 32, 32, 3], activation: "relu", output: "softmax" });
    }
    await startJob(trainingRequest(form, QUICK_MODEL, dataset.id));
  } catch (error) {
    $("train-error").textContent = error.message;
  }
});

// ---- predict -----------------------------------------------------------------------------

$("predict-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("predict-error").textContent = "";
  let inputs;
  try {
    inputs = JSON.parse(form.elements.inputs.value);
  } catch (error) {
    $("predict-error").textContent = `the rows are not JSON: ${error.message}`;
    return;
  }
  const model = form.elements.model.value;
  if (!model) {
    $("predict-error").textContent = "no trained model yet: train one first";
    return;
  }
  try {
    renderPrediction(inputs, await post(`/v1/models/${encodeURIComponent(model)}/predict`, { inputs }));
  } catch (error) {
    $("predict-error").textContent = error.message;
    renderPrediction([], null);
  }
});

function renderPrediction(inputs, answer) {
  const table = $("predict-result");
  const head = table.querySelector("thead");
  const body = table.querySelector("tbody");
  head.replaceChildren();
  body.replaceChildren();
  table.dataset.rows = "0";
  if (!answer) return;
  const names = answer.output_names || answer.outputs[0].map((_, i) => `y${i}`);
  const labels = answer.labels || null;
  const tr = head.insertRow();
  for (const text of ["input", ...names.map((n) => `out ${n}`), ...(labels ? ["label"] : [])]) {
    tr.append(Object.assign(document.createElement("th"), { textContent: text }));
  }
  answer.outputs.forEach((outputs, i) => {
    const row = body.insertRow();
    row.insertCell().textContent = JSON.stringify(inputs[i]);
    for (const v of outputs) row.insertCell().textContent = formatNumber(v);
    if (labels) {
      const cell = row.insertCell();
      cell.className = "label";
      cell.textContent = String(labels[i]);
    }
  });
  table.dataset.rows = String(answer.outputs.length);
  table.dataset.version = String(answer.version);
}

refresh();
