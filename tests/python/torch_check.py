"""A check with real PyTorch, by hand (CI has no torch: a 6 GB wheel): for every activation,
with and without batch norm, the README's recipe loads a downloaded version into
nn.Sequential and reproduces /predict, and a torch state_dict saved with
safetensors.torch.save_file imports and predicts what torch computes.

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch safetensors requests
    cargo run -- --ephemeral --addr 127.0.0.1:8080 &
    MLP_LAB_URL=http://127.0.0.1:8080 /tmp/torchvenv/bin/python tests/python/torch_check.py

(Not named test_*.py, so pytest does not collect it.)"""
import json, os, pathlib, re, time, uuid

import requests
import torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

B = os.environ.get("MLP_LAB_URL", "http://127.0.0.1:8080").rstrip("/")
s = requests.Session()
readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
snippet = re.search(r"```python\n(import json, torch.*?)```", readme, re.S).group(1)

def train(spec, output, n_out):
    name = "t-" + uuid.uuid4().hex[:8]
    r = s.post(B + "/v1/models", json={"name": name, **spec}); assert r.status_code == 201, r.text
    ds = s.post(B + "/v1/datasets", json={"generator": {"kind": "blobs", "samples": 120, "features": 3, "classes": 3, "seed": 1}} if output == "softmax" else {"generator": {"kind": "xor", "samples": 120, "seed": 1}}).json()["id"]
    j = s.post(B + "/v1/jobs", json={"model": name, "dataset": ds, "epochs": 15, "batch_size": 16}).json()
    while True:
        j = s.get(B + f"/v1/jobs/{j['id']}").json()
        if j["state"] not in ("queued", "running"): break
        time.sleep(0.05)
    assert j["state"] == "succeeded", j
    return name

worst = 0.0
cases = []
for act in ["relu", "tanh", "sigmoid", {"name": "leaky_relu", "alpha": 0.1}, "prelu", {"name": "elu", "alpha": 0.7}, "selu", "gelu", "silu", "softplus", "identity"]:
    for bn in (False, True):
        cases.append(({"layers": [3, 6, 5, 3], "activation": act, "output": "softmax", "batch_norm": bn, "dropout": 0.1}, "softmax"))
for spec, output in cases:
    name = train(spec, output, 3)
    path = f"/tmp/{name}.safetensors"  # noqa: S108
    open(path, "wb").write(s.get(B + f"/v1/models/{name}/versions/1/weights").content)
    x_in = [[0.3, -1.2, 0.8], [1.5, 0.1, -0.4]]
    pred = s.post(B + f"/v1/models/{name}/predict", json={"inputs": x_in}).json()["outputs"]
    code = snippet.replace('path = "xor-v1.safetensors"', f'path = "{path}"').replace("x = torch.tensor([[0.0, 1.0]])", f"x = torch.tensor({x_in})").replace("print(head[spec[\"output\"]](model(x)))", "out = head[spec[\"output\"]](model(x))")
    g = {}
    exec(code, g)
    diff = (g["out"].detach() - torch.tensor(pred)).abs().max().item()
    worst = max(worst, diff)
    # reverse: a torch-made state dict, saved by safetensors.torch, imported
    model = g["model"]
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.01 * torch.randn_like(p))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, f"/tmp/{name}-torch.safetensors")
    r = s.post(B + f"/v1/models/{name}/versions", data=open(f"/tmp/{name}-torch.safetensors", "rb").read(), headers={"content-type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    v = r.json()["version"]
    pred2 = s.post(B + f"/v1/models/{name}/predict", json={"inputs": x_in, "version": v}).json()["outputs"]
    with torch.no_grad():
        ref = model(torch.tensor(x_in)).softmax(1)  # no metadata: raw inputs
    diff2 = (ref - torch.tensor(pred2)).abs().max().item()
    worst = max(worst, diff2)
    print(json.dumps(spec["activation"]), "bn" if spec["batch_norm"] else "  ", f"export {diff:.2e}  import {diff2:.2e}")
print("worst", worst)
assert worst < 1e-5
