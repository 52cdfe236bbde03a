"""The dashboard (`GET /`) driven in a real browser: Debian's headless Chromium through
Playwright, against the live server of conftest.py.

- A job started from the page ("Spirals + small model") is followed live: the loss chart's
  plotted points grow while it runs (read from the canvas's `data-points`, which each draw
  sets), the gradient-flow chart has one series per layer, the layer table shows the dead
  fractions; the page's Cancel button stops it.
- A job started with the train form is charted to its last epoch; the predict form then
  answers the labels that the API answers, and shows a wrong-width request's error.
- The experiments panel: with a server that has no experiments API it says so; with one, a
  small experiment is shown with its leaderboard. The experiment view is also checked
  against the contract's shapes with the API mocked in the browser (plots shown, and hidden
  when the plot route is 404), and the token the user gives is sent as `Authorization: Bearer`.
- A screenshot is saved to $MLP_LAB_SCREENSHOT_DIR (default target/ci/) as dashboard.png.

Skips only when Playwright or Chromium is missing (`.ci/run` installs both). Chromium is
/usr/bin/chromium unless MLP_LAB_CHROMIUM says otherwise; Playwright's own browser download
is never used. While editing the dashboard, MLP_LAB_DASHBOARD_DIR=src/http/dashboard serves its
files from disk instead of the server's compiled-in copies, so no rebuild is needed.
"""

import json
import mimetypes
import os
import pathlib
import re
import time
import uuid

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the skip below says why
    sync_playwright = None

CHROMIUM = os.environ.get("MLP_LAB_CHROMIUM", "/usr/bin/chromium")
ROOT = pathlib.Path(__file__).resolve().parents[2]
QUICK_MODEL = "dashboard-spirals-relu"  # what app.js's one-click button creates
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.skipif(
        sync_playwright is None,
        reason="Playwright for Python is not installed (pip install -r .ci/requirements.txt)",
    ),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MLP_LAB_CHROMIUM)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.on(
        "console",
        lambda m: errors.append(f"console: {m.text}")
        if m.type == "error" and not expected_console_error(m.text) else None,
    )
    local = os.environ.get("MLP_LAB_DASHBOARD_DIR")
    if local:
        serve_from_disk(page, base_url, pathlib.Path(local))
    yield page
    context.close()
    assert errors == [], errors


def expected_console_error(text: str) -> bool:
    # Chromium logs every 4xx/5xx fetch; those the page handles are not script errors.
    return "Failed to load resource" in text


def serve_from_disk(page, base_url, directory):
    def handle(route):
        path = route.request.url[len(base_url):].split("?")[0]
        name = "index.html" if path == "/" else path.removeprefix("/dashboard/")
        file = directory / name
        if not file.is_file():
            return route.continue_()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        route.fulfill(status=200, body=file.read_bytes(), content_type=kind)

    page.route(re.compile(re.escape(base_url) + r"/($|dashboard/)"), handle)


def open_dashboard(page, base_url):
    page.goto(base_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#server-status")).to_have_text("connected")


def points(page, canvas: str) -> int:
    return int(page.locator(canvas).get_attribute("data-points"))


def wait_for(page, condition, what: str, timeout: float = TIMEOUT_MS / 1000):
    """Polls `condition`; waits through the page, so that Playwright's handlers (routes,
    request listeners) run meanwhile, which a plain sleep would hold up."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(50)


def screenshot(page, name: str = "dashboard.png") -> pathlib.Path:
    directory = pathlib.Path(os.environ.get("MLP_LAB_SCREENSHOT_DIR") or ROOT / "target" / "ci")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_a_job_from_the_page_is_charted_live_and_its_model_predicts(page, base_url, api):
    open_dashboard(page, base_url)
    job_view = page.locator("#job-view")

    # One click: the spirals set, the 2-32-32-3 ReLU model and a long job.
    page.fill("#train-form input[name=epochs]", "20000")
    page.click("#quick-spirals")
    expect(job_view).to_be_visible()
    expect(job_view).to_have_attribute("data-state", "running")
    wait_for(page, lambda: points(page, "#loss-chart") >= 3, "the first epochs on the loss chart")
    first = points(page, "#loss-chart")
    wait_for(page, lambda: points(page, "#loss-chart") > first + 5, "the loss chart to grow")
    assert job_view.get_attribute("data-state") == "running"
    assert page.locator("#job-progress").evaluate("e => e.value") > 0  # follows the stream
    expect(page.locator("#grad-chart")).to_have_attribute("data-series", "3")
    assert points(page, "#grad-chart") >= 1
    layers = page.locator("#layers-table tbody tr")
    expect(layers).to_have_count(3)
    expect(layers.nth(0)).to_contain_text("relu")
    expect(layers.nth(0)).to_contain_text("%")  # the dead fraction of a ReLU layer

    screenshot(page, "dashboard-running.png")

    job_id = job_view.get_attribute("data-job")
    page.click("#job-cancel")
    expect(job_view).to_have_attribute("data-state", "cancelled")
    assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    expect(page.locator(f"#jobs-list tr[data-id='{job_id}']")).to_contain_text("cancelled")

    # The train form, on the same dataset and model: charted to its last epoch.
    form = page.locator("#train-form")
    form.locator("select[name=model]").select_option(QUICK_MODEL)
    page.fill("#train-form input[name=epochs]", "40")
    form.locator("button[type=submit]").click()
    expect(job_view).not_to_have_attribute("data-job", job_id)
    expect(job_view).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#loss-chart")).to_have_attribute("data-points", "41")  # epochs 0…40
    expect(page.locator("#grad-chart")).to_have_attribute("data-points", "40")  # from epoch 1

    # Predict with the form: the API's labels.
    rows = [[0.5, 0.5], [-0.5, 0.2], [0.0, -0.8]]
    predict = page.locator("#predict-form")
    expect(predict.locator(f"select[name=model] option[value='{QUICK_MODEL}']")).to_have_count(1)
    predict.locator("select[name=model]").select_option(QUICK_MODEL)
    predict.locator("textarea").fill(json.dumps(rows))
    predict.locator("button[type=submit]").click()
    result = page.locator("#predict-result")
    expect(result).to_have_attribute("data-rows", "3")
    want = api.predict(QUICK_MODEL, rows)
    shown = page.locator("#predict-result td.label").all_inner_texts()
    assert shown == [str(label) for label in want["labels"]]
    expect(page.locator("#predict-result thead")).to_contain_text("out 2")
    screenshot(page)

    # A wrong-width row: the API's error, no table.
    predict.locator("textarea").fill("[[1, 2, 3]]")
    predict.locator("button[type=submit]").click()
    expect(page.locator("#predict-error")).to_contain_text("inputs")
    expect(result).to_have_attribute("data-rows", "0")


def test_the_experiments_panel_follows_what_the_server_has(page, base_url, api):
    listing = api.get("/v1/experiments", expect=None)
    if listing.status_code == 404:
        assert listing.json()["code"] == "route_not_found"
        open_dashboard(page, base_url)
        expect(page.locator("#experiments-missing")).to_be_visible()
        expect(page.locator("#experiments-list")).to_be_hidden()
        return
    assert listing.status_code == 200, listing.text
    dataset = api.post(
        "/v1/datasets",
        {"generator": {"kind": "moons", "samples": 120, "noise": 0.1, "seed": 3}},
        expect=201,
    ).json()["id"]
    experiment = api.post(
        "/v1/experiments",
        {
            "name": f"dash-{uuid.uuid4().hex[:6]}",
            "dataset": dataset,
            "model": {"layers": [2, 8, 2], "activation": "relu", "output": "softmax"},
            "training": {"epochs": 5, "batch_size": 16, "validation_split": 0.25},
            "grid": {"activations": ["tanh", "relu"]},
            "seeds": [1, 2],
        },
        expect=201,
    ).json()
    open_dashboard(page, base_url)
    page.click(f"#experiments-list tr[data-id='{experiment['id']}']")
    view = page.locator("#experiment-view")
    expect(view).to_have_attribute("data-state", "finished")
    expect(page.locator("#leaderboard")).to_have_attribute("data-rows", "2")
    expect(page.locator("#comparisons tbody tr")).to_have_count(1)
    expect(page.locator("#exp-cells button.chip")).to_have_count(4)
    plots = api.get(f"/v1/experiments/{experiment['id']}/plot.svg?kind=leaderboard", expect=None)
    if plots.status_code == 404:
        expect(page.locator("#exp-plots-missing")).to_be_visible()
    else:
        expect(page.locator("#exp-bars")).to_be_visible()
        expect(page.locator("#exp-curves")).to_be_visible()
    screenshot(page, "dashboard-experiment.png")


def stat(mean, std, values):
    return {"mean": mean, "std": std, "values": values}


def experiment_view(eid: str) -> dict:
    """An experiment view in the shape of the shared contract (notes: experiments-contract)."""
    row = lambda cell, label, loss, acc: {  # noqa: E731
        "cell": cell, "label": label, "runs": 3, "succeeded": 3,
        "best_val_loss": stat(loss, 0.01, [loss] * 3), "val_accuracy": stat(acc, 0.02, [acc] * 3),
        "final_gap": stat(0.05, 0.01, [0.05] * 3), "epochs_to_best": stat(40, 3.0, [40] * 3),
        "grad_ratio_first": stat(0.9, 0.1, [0.9] * 3), "grad_ratio_final": stat(1.1, 0.1, [1.1] * 3),
        "dead_fraction": stat(0.12, 0.02, [0.12] * 3) if "relu" in label else stat(None, None, [None] * 3),
        "saturated_fraction": stat(0.3, 0.05, [0.3] * 3) if "sigmoid" in label else stat(None, None, [None] * 3),
    }
    jobs = lambda: [{"seed": s, "job": str(uuid.uuid4()), "state": "succeeded"} for s in (1, 2, 3)]  # noqa: E731
    return {
        "id": eid, "name": "sigmoid-vs-relu", "created_at": "2026-11-28T20:00:00Z",
        "dataset": str(uuid.uuid4()), "task": "classification", "state": "finished",
        "progress": {"total": 6, "done": 6, "succeeded": 6, "failed": 0, "cancelled": 0,
                     "interrupted": 0, "running": 0, "queued": 0, "fraction": 1.0},
        "grid": {"activations": ["relu", "sigmoid"]}, "seeds": [1, 2, 3],
        "model": {"layers": [2, 16, 3], "activation": "relu", "output": "softmax"},
        "training": {"epochs": 50, "validation_split": 0.2},
        "cells": [
            {"index": 0, "label": "activation=relu", "params": {"activation": "relu"},
             "model": str(uuid.uuid4()), "model_name": "exp-1234abcd-c00", "jobs": jobs()},
            {"index": 1, "label": "activation=sigmoid", "params": {"activation": "sigmoid"},
             "model": str(uuid.uuid4()), "model_name": "exp-1234abcd-c01", "jobs": jobs()},
        ],
        "leaderboard": {
            "sort": "best_val_loss", "order": "asc",
            "rows": [row(0, "activation=relu", 0.21, 0.93), row(1, "activation=sigmoid", 0.48, 0.81)],
            "comparisons": [{
                "best": 0, "other": 1, "metric": "best_val_loss", "n": 3, "mean_difference": -0.27,
                "test": "paired t-test (two-sided)", "statistic": -9.2, "df": 2, "p_value": 0.0116,
                "wilcoxon": {"test": "Wilcoxon signed-rank (exact, two-sided)", "statistic": 0, "p_value": 0.25},
            }],
        },
    }


SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="150"><rect width="300" height="150" fill="#dde"/></svg>'


def mock_experiments(page, base_url, plots: bool):
    eid = str(uuid.uuid4())
    view = experiment_view(eid)
    asked = []

    def handle(route):
        url = route.request.url
        asked.append(url)
        if "/plot.svg" in url:
            if plots:
                return route.fulfill(status=200, body=SVG, content_type="image/svg+xml")
            return route.fulfill(status=404, content_type="application/problem+json", body=json.dumps(
                {"type": "urn:mlp-lab:problem:route_not_found", "title": "No such route",
                 "status": 404, "detail": "no route", "code": "route_not_found"}))
        if re.search(r"/v1/experiments(\?|$)", url):
            summary = {k: view[k] for k in ("id", "name", "created_at", "dataset", "task", "state", "progress")}
            body = {"items": [summary], "total": 1, "limit": 25, "offset": 0}
        else:
            body = view
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(re.escape(base_url) + r"/v1/experiments(\?.*|/.*)?$"), handle)
    return eid, asked


@pytest.mark.parametrize("plots", [True, False], ids=["with-plots", "without-plots"])
def test_the_experiment_view_shows_the_contract_shapes(page, base_url, plots):
    eid, asked = mock_experiments(page, base_url, plots)
    open_dashboard(page, base_url)
    page.click(f"#experiments-list tr[data-id='{eid}']")

    expect(page.locator("#experiment-view")).to_have_attribute("data-state", "finished")
    board = page.locator("#leaderboard")
    expect(board).to_have_attribute("data-rows", "2")
    expect(board.locator("thead")).to_contain_text("best val loss ▲")
    expect(board.locator("thead")).to_contain_text("val acc")
    expect(board.locator("tbody tr").nth(0)).to_contain_text("0.21 ± 0.01")
    expect(page.locator("#comparisons tbody tr")).to_have_count(1)
    expect(page.locator("#comparisons tbody")).to_contain_text("0.0116")
    expect(page.locator("#exp-cells button.chip")).to_have_count(6)
    if plots:
        expect(page.locator("#exp-curves")).to_be_visible()
        expect(page.locator("#exp-bars")).to_be_visible()
        assert page.locator("#exp-bars").get_attribute("src").startswith("blob:")
        assert any("kind=leaderboard&metric=best_val_loss" in u for u in asked), asked
        screenshot(page, "dashboard-experiment-mocked.png")
    else:
        expect(page.locator("#exp-plots-missing")).to_be_visible()
        expect(page.locator("#exp-plots")).to_be_hidden()

    # Sorting by a column asks the server for that order.
    board.locator("th[data-metric=val_accuracy]").click()
    wait_for(page, lambda: any("sort=val_accuracy&order=desc" in u for u in asked), "a sorted request")


def test_the_token_is_sent_as_a_bearer_header_and_kept_for_the_session(page, base_url):
    open_dashboard(page, base_url)
    seen = []
    page.on("request", lambda r: seen.append(r.headers.get("authorization")) if "/v1/jobs" in r.url else None)

    page.fill("#token", "s3cret-token")
    page.click("#token-form button[type=submit]")

    wait_for(page, lambda: "Bearer s3cret-token" in seen, "a request with the token")
    assert page.evaluate("sessionStorage.getItem('mlp-lab.token')") == "s3cret-token"
    page.click("#token-forget")
    assert page.evaluate("sessionStorage.getItem('mlp-lab.token')") is None


def test_a_refused_token_is_said_in_the_header(page, base_url):
    problem = {"type": "urn:mlp-lab:problem:unauthorized", "title": "Unauthorized", "status": 401,
               "detail": "this route needs a bearer token", "code": "unauthorized"}
    page.route(re.compile(re.escape(base_url) + r"/v1/"), lambda route: route.fulfill(
        status=401, content_type="application/problem+json", body=json.dumps(problem),
        headers={"WWW-Authenticate": 'Bearer realm="mlp-lab"'}))
    page.goto(base_url + "/")
    expect(page.locator("#server-status")).to_have_text("token needed")
