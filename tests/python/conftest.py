"""Shared fixtures of the interop tests: real Python clients against a live mlp-lab.

`.ci/run` starts the server and sets MLP_LAB_URL; to run these by hand:

    cargo run -- --ephemeral --addr 127.0.0.1:8080 &
    MLP_LAB_URL=http://127.0.0.1:8080 /tmp/mlp-lab-ci-venv/bin/python -m pytest tests/python
"""

import os
import time
import uuid

import pytest
import requests


class Api:
    """A thin client of the /v1 API: JSON in and out, failures raised with the body."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return self.base + path

    def request(self, method: str, path: str, expect: int | None = None, **kw):
        response = self.http.request(method, self.url(path), timeout=60, **kw)
        if expect is not None and response.status_code != expect:
            raise AssertionError(
                f"{method} {path}: {response.status_code}, expected {expect}: {response.text}"
            )
        return response

    def post(self, path: str, body, expect: int | None = None):
        return self.request("POST", path, expect, json=body)

    def get(self, path: str, expect: int | None = 200):
        return self.request("GET", path, expect)

    def create_model(self, spec: dict) -> dict:
        """Creates a model under a fresh unique name and answers its record."""
        body = {"name": f"py-{uuid.uuid4().hex[:12]}", **spec}
        return self.post("/v1/models", body, expect=201).json()

    def train(self, model: str, dataset, timeout: float = 120, **request) -> dict:
        """Runs a training job to its end and answers the finished job; fails unless it
        succeeded."""
        job = self.post(
            "/v1/jobs", {"model": model, "dataset": dataset, **request}, expect=202
        ).json()
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/v1/jobs/{job['id']}").json()
            if job["state"] not in ("queued", "running"):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job['id']} still {job['state']} after {timeout}s")
            time.sleep(0.05)
        assert job["state"] == "succeeded", job
        return job

    def predict(self, model: str, inputs, version: int | None = None) -> dict:
        body = {"inputs": inputs}
        if version is not None:
            body["version"] = version
        return self.post(f"/v1/models/{model}/predict", body, expect=200).json()


@pytest.fixture(scope="session")
def base_url() -> str:
    url = os.environ.get("MLP_LAB_URL")
    if not url:
        pytest.fail("MLP_LAB_URL is not set: start mlp-lab and point it there (see conftest.py)")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def api(base_url) -> Api:
    return Api(base_url)
