// The job view: state and progress, the loss chart (train and validation loss per epoch),
// the gradient-flow chart (each layer's mean gradient norm per epoch, log scale) and the
// latest per-layer diagnostics (dead and saturated fractions), all live from
// `GET /v1/jobs/{id}/events`. The stream replays every epoch so far; a reconnection sends the
// last epoch received as `Last-Event-ID` and goes on from there, so the charts keep what they
// have. A stream that fell behind the job (`event: lagged`) is resumed that way at once; one
// refused because too many clients follow events (429) is tried again a little later.

import { get, post, stream, ApiError } from "./api.js";
import { drawLineChart, formatNumber, PALETTE } from "./charts.js";

const $ = (id) => document.getElementById(id);
const FINISHED = ["succeeded", "failed", "cancelled", "interrupted"];
/** The stream sends the job record on state changes only; its progress (samples/s, ETA) is
 * read again this often while the job runs. */
const PROGRESS_MS = 2000;
/** How long to wait before following again after a lost stream, or after a 429. */
const RECONNECT_MS = 2000;
const BUSY_MS = 5000;

export class JobView {
  constructor({ onChange }) {
    this.root = $("job-view");
    this.onChange = onChange;
    this.controller = null;
    this.frame = 0;
    $("job-close").addEventListener("click", () => this.close());
    $("job-cancel").addEventListener("click", () => this.cancel());
    window.addEventListener("resize", () => this.schedule());
  }

  /** Shows job `id` and follows it until it ends or another job is opened. */
  open(id) {
    this.stop();
    this.id = id;
    this.job = null;
    this.reset();
    this.root.hidden = false;
    this.root.dataset.job = id;
    $("job-id").textContent = id;
    this.note("");
    this.render();
    this.follow(new AbortController());
  }

  close() {
    this.stop();
    this.id = null;
    this.root.hidden = true;
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    clearInterval(this.poll);
  }

  /** Reads the job record every PROGRESS_MS until it is finished or another job is opened. */
  pollProgress(controller) {
    clearInterval(this.poll);
    this.poll = setInterval(async () => {
      if (this.controller !== controller || (this.job && FINISHED.includes(this.job.state))) {
        clearInterval(this.poll);
        return;
      }
      try {
        const job = await get(`/v1/jobs/${this.id}`, controller.signal);
        // A finished record comes with the stream's `end` event; never go back from it.
        if (this.controller === controller && !FINISHED.includes(this.job?.state)) this.show(job);
      } catch {
        // the stream reports trouble; this is only the progress line
      }
    }, PROGRESS_MS);
  }

  reset() {
    // Compact columns rather than whole records: a job may have 100,000 epochs.
    this.epochs = [];
    this.train = [];
    this.val = [];
    this.grads = []; // per layer: [[epoch, grad_norm], …]
    this.layerNames = [];
    this.latest = null;
    this.lastEventId = undefined; // of the last epoch event: where a reconnection goes on
  }

  async follow(controller) {
    this.controller = controller;
    this.lagged = false;
    const id = this.id;
    try {
      this.show(await get(`/v1/jobs/${id}`, controller.signal));
      this.pollProgress(controller);
      const onEvent = (name, data, eventId) => this.event(name, data, eventId);
      await stream(`/v1/jobs/${id}/events`, onEvent, controller.signal, this.lastEventId);
      // A stream that lagged ends before its job does, whatever the polled record says.
      if (this.lagged || (this.job && !FINISHED.includes(this.job.state))) {
        throw new Error("the event stream closed early");
      }
    } catch (error) {
      if (controller.signal.aborted || this.id !== id) return;
      const busy = error instanceof ApiError && error.status === 429;
      if (error instanceof ApiError && error.status < 500 && !busy) {
        this.note(error.message);
        return;
      }
      if (busy) this.note(`${error.message}; trying again…`);
      else if (!this.lagged) this.note(`lost the event stream (${error.message}); reconnecting…`);
      const wait = this.lagged ? 0 : busy ? BUSY_MS : RECONNECT_MS;
      setTimeout(() => {
        if (this.id === id && this.controller === controller) this.follow(new AbortController());
      }, wait);
    }
  }

  event(name, data, eventId) {
    if (name === "epoch") {
      this.note("");
      this.epoch(data);
      if (eventId !== undefined) this.lastEventId = eventId;
    } else if (name === "lagged") {
      this.lagged = true;
    } else if (name === "status" || name === "end") {
      this.show(data);
      if (name === "end" && this.onChange) this.onChange(data);
    }
  }

  epoch(record) {
    if (this.epochs.length && record.epoch <= this.epochs[this.epochs.length - 1]) return;
    this.epochs.push(record.epoch);
    this.train.push([record.epoch, record.train_loss]);
    if (record.val_loss !== null && record.val_loss !== undefined) this.val.push([record.epoch, record.val_loss]);
    record.layers.forEach((layer, i) => {
      if (!this.grads[i]) this.grads[i] = [];
      this.layerNames[i] = `L${layer.layer} ${layer.activation}`;
      if (layer.grad_norm !== null) this.grads[i].push([record.epoch, layer.grad_norm]);
    });
    this.latest = record;
    this.schedule();
  }

  show(job) {
    this.job = job;
    this.schedule();
  }

  note(text) {
    $("job-note").textContent = text;
  }

  async cancel() {
    try {
      this.show(await post(`/v1/jobs/${this.id}/cancel`));
    } catch (error) {
      this.note(error.message);
    }
  }

  /** Redraws at the next animation frame, once however many epochs arrived meanwhile. */
  schedule() {
    if (this.frame || this.root.hidden) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const job = this.job;
    const state = job ? job.state : "loading";
    this.root.dataset.state = state;
    this.root.dataset.epochsSeen = String(this.epochs.length);
    const badge = $("job-state");
    badge.textContent = state;
    badge.className = `badge ${state}`;
    $("job-cancel").hidden = !job || FINISHED.includes(state);
    // The epochs streamed may be ahead of the record's progress.
    const epoch = Math.max(job ? job.progress.epoch : 0, this.latest ? this.latest.epoch : 0);
    $("job-summary").textContent = job ? summary(job, epoch, this.latest) : "";
    $("job-progress").value = job && job.progress.epochs ? Math.min(1, epoch / job.progress.epochs) : 0;

    drawLineChart($("loss-chart"), [
      { label: "train loss", color: PALETTE[0], points: this.train },
      { label: "validation loss", color: PALETTE[1], points: this.val },
    ], { xLabel: "epoch", yLabel: "loss", empty: "waiting for the first epoch" });
    drawLineChart($("grad-chart"), this.grads.map((points, i) => ({
      label: this.layerNames[i], color: PALETTE[i % PALETTE.length], points,
    })), { logY: true, xLabel: "epoch", yLabel: "grad norm", empty: "gradients appear from epoch 1" });
    this.renderLayers();
  }

  renderLayers() {
    const body = $("layers-table").querySelector("tbody");
    body.replaceChildren();
    if (!this.latest) return;
    for (const layer of this.latest.layers) {
      const row = body.insertRow();
      row.insertCell().textContent = String(layer.layer);
      row.insertCell().textContent = layer.activation;
      row.insertCell().textContent = formatNumber(layer.grad_norm);
      row.insertCell().textContent = formatNumber(layer.weight_norm);
      row.insertCell().append(...fraction(layer.dead_fraction));
      row.insertCell().append(...fraction(layer.saturated_fraction));
    }
  }
}

/** A fraction as a meter and a percentage, or a dash where it does not apply. */
function fraction(value) {
  if (value === null || value === undefined) return [document.createTextNode("–")];
  const meter = document.createElement("meter");
  meter.min = 0;
  meter.max = 1;
  meter.high = 0.25;
  meter.optimum = 0;
  meter.value = value;
  return [meter, document.createTextNode(` ${(value * 100).toFixed(1)} %`)];
}

function summary(job, epoch, latest) {
  const p = job.progress;
  const parts = [`${job.model_name}`, `epoch ${epoch} / ${p.epochs}`];
  if (p.samples_per_second) parts.push(`${Math.round(p.samples_per_second).toLocaleString("en-US")} samples/s`);
  if (p.eta_seconds !== null && p.eta_seconds !== undefined && !FINISHED.includes(job.state)) {
    parts.push(`ETA ${formatNumber(p.eta_seconds)} s`);
  }
  if (latest) {
    parts.push(`train loss ${formatNumber(latest.train_loss)}`);
    if (latest.val_loss !== null) parts.push(`val loss ${formatNumber(latest.val_loss)}`);
    if (latest.val_accuracy !== null) parts.push(`val acc ${formatNumber(latest.val_accuracy)}`);
    if (latest.val_r2 !== null) parts.push(`val R² ${formatNumber(latest.val_r2)}`);
  }
  if (job.result) parts.push(`→ version ${job.result.version}, best epoch ${job.result.best_epoch}`);
  if (job.error) parts.push(`error: ${job.error.message || JSON.stringify(job.error)}`);
  return parts.join(" · ");
}
