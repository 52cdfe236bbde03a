"""Weights in and out, checked with the real libraries against the live server.

- ONNX: for every activation, with and without batch norm, and for every head, a tiny model is
  trained through the API, its ONNX export is checked by `onnx.checker` and run by
  onnxruntime, and the outputs must equal `/v1/models/{m}/predict` within 1e-5 (absolute for
  probabilities and values up to 1; relative beyond, since the extreme probe rows give
  regression values near 20, where one f32 ulp is 2e-6).
- safetensors out: the download loads with `safetensors.numpy`, with PyTorch's tensor names
  and `[out, in]` layout and mlp-lab's metadata; a numpy forward pass over those tensors, as
  README "Weights for PyTorch" describes it, gives the service's predictions.
- safetensors in: a PyTorch-style state dict built with numpy and written by
  `safetensors.numpy.save_file` (no metadata) imports, and then predicts what
  `torch.nn.Sequential(Linear, [BatchNorm1d,] Act, …)` computes in eval mode (replicated in
  numpy below, so that the test needs no torch); a tensor of the wrong shape is 422 naming it
  and both shapes.

Max abs differences are printed (`pytest -s` shows them).
"""

import json
import math
import struct

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import requests
import safetensors.numpy

ACTIVATIONS = {
    "identity": "identity",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "leaky_relu": {"name": "leaky_relu", "alpha": 0.1},
    "prelu": "prelu",
    "elu": {"name": "elu", "alpha": 0.7},
    "selu": "selu",
    "gelu": "gelu",
    "silu": "silu",
    "softplus": "softplus",
}
HEADS = {"softmax": 3, "sigmoid": 1, "identity": 2}  # head → outputs
TOLERANCE = 1e-5


def dataset(head: str) -> dict:
    """60 rows of 3 features, far from standardized (so the standardizer matters), with
    targets for `head`: 3 classes, 2 classes, or 2 real values."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 3)) * [3.0, 0.5, 10.0] + [5.0, -1.0, 20.0]
    s = (x - x.mean(0)) / x.std(0)
    if head == "softmax":
        y = (s[:, 0] > 0.4).astype(int) + (s[:, 0] + s[:, 1] > 0.8).astype(int)
        targets = [int(v) for v in y]
    elif head == "sigmoid":
        targets = [int(v) for v in (s[:, 0] * s[:, 2] > 0)]
    else:
        targets = [[float(a) + 0.25, float(b) - 0.5] for a, b in zip(s[:, 0] - s[:, 1], s[:, 2])]
    return {"features": x.tolist(), "targets": targets}


def probe_inputs() -> np.ndarray:
    """Rows inside and well outside the training range."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(16, 3)) * [3.0, 0.5, 10.0] + [5.0, -1.0, 20.0]
    x[-1] = [40.0, -6.0, 150.0]
    x[-2] = [-30.0, 4.0, -100.0]
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def datasets(api):
    return {
        head: api.post("/v1/datasets", {"name": f"weights-{head}", **dataset(head)}, expect=201).json()["id"]
        for head in HEADS
    }


def train(api, datasets, activation, head: str, batch_norm: bool) -> str:
    model = api.create_model(
        {
            "layers": [3, 5, 4, HEADS[head]],
            "activation": activation,
            "output": head,
            "batch_norm": batch_norm,
            "dropout": 0.1,
        }
    )
    api.train(model["name"], datasets[head], epochs=4, batch_size=16, seed=3)
    return model["name"]


def download(api, path: str) -> bytes:
    response = api.get(path)
    assert response.headers["content-type"] == "application/octet-stream"
    return response.content


CASES = [(a, "softmax", bn) for a in ACTIVATIONS for bn in (False, True)] + [
    (a, head, bn) for a in ACTIVATIONS for head in ("sigmoid", "identity") for bn in (False, True)
]


@pytest.mark.parametrize("activation,head,batch_norm", CASES)
def test_onnxruntime_gives_the_service_predictions(api, datasets, activation, head, batch_norm):
    name = train(api, datasets, ACTIVATIONS[activation], head, batch_norm)
    x = probe_inputs()

    blob = download(api, f"/v1/models/{name}/versions/1/onnx")
    model = onnx.load_from_string(blob)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    (got,) = session.run(["output"], {"input": x})
    want = np.array(api.predict(name, x.tolist())["outputs"], dtype=np.float64)

    assert model.opset_import[0].version == 17
    (input_,) = session.get_inputs()
    assert input_.name == "input" and input_.type == "tensor(float)"
    assert isinstance(input_.shape[0], str) and input_.shape[1] == 3
    assert got.shape == want.shape == (len(x), HEADS[head])
    diff = float(np.max(np.abs(got - want)))
    scaled = float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))
    print(f"onnx {activation:10s} {head:8s} bn={batch_norm!s:5s} max abs diff {diff:.3g}")
    assert scaled <= TOLERANCE


# --- numpy replicas of PyTorch modules (eval mode), the reference for weights in and out ---

# torch.nn.SELU's constants, as in torch/nn/functional.py.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default eps


def torch_activation(name: str, u: np.ndarray, param=None) -> np.ndarray:
    """What `torch.nn.<Module>` computes, in float64."""
    if name == "identity":
        return u
    if name == "sigmoid":
        return 1 / (1 + np.exp(-u))
    if name == "tanh":
        return np.tanh(u)
    if name == "relu":
        return np.maximum(u, 0)
    if name in ("leaky_relu", "prelu"):  # LeakyReLU(a) / PReLU(units): slope a below 0
        return np.where(u > 0, u, param * u)
    if name == "elu":
        return np.where(u > 0, u, param * np.expm1(np.minimum(u, 0)))
    if name == "selu":
        return SELU_SCALE * np.where(u > 0, u, SELU_ALPHA * np.expm1(np.minimum(u, 0)))
    if name == "gelu":  # nn.GELU() default approximate='none': the erf form
        return 0.5 * u * (1 + np.vectorize(math.erf)(u / math.sqrt(2)))
    if name == "silu":
        return u / (1 + np.exp(-u))
    if name == "softplus":  # nn.Softplus(beta=1, threshold=20)
        return np.where(u > 20, u, np.log1p(np.exp(np.minimum(u, 20))))
    raise ValueError(name)


def torch_sequential(state: dict, modules: list, x: np.ndarray, head: str) -> np.ndarray:
    """`nn.Sequential(*modules).eval()(x)` with `load_state_dict(state)`, then the head.
    `modules` is a list of (kind, param) in Sequential order: linear, batch_norm, an
    activation name (with its alpha), or dropout (identity in eval mode)."""
    h = x.astype(np.float64)
    for i, (kind, param) in enumerate(modules):
        t = {k.split(".", 1)[1]: v.astype(np.float64) for k, v in state.items() if k.split(".")[0] == str(i)}
        if kind == "linear":
            h = h @ t["weight"].T + t["bias"]
        elif kind == "batch_norm":
            h = (h - t["running_mean"]) / np.sqrt(t["running_var"] + BN_EPS) * t["weight"] + t["bias"]
        elif kind == "prelu":
            h = torch_activation("prelu", h, t["weight"])
        elif kind == "dropout":
            pass
        else:
            h = torch_activation(kind, h, param)
    if head == "softmax":
        e = np.exp(h - h.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if head == "sigmoid":
        return 1 / (1 + np.exp(-h))
    return h


def modules_of(layers, activation: str, param, batch_norm: bool, dropout: bool) -> list:
    modules = []
    for i in range(len(layers) - 1):
        modules.append(("linear", None))
        if i == len(layers) - 2:
            break
        if batch_norm:
            modules.append(("batch_norm", None))
        modules.append((activation, param))
        if dropout:
            modules.append(("dropout", None))
    return modules


def header_metadata(blob: bytes) -> dict:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n])["__metadata__"]


def test_downloaded_weights_load_with_torch_names_shapes_and_metadata(api, datasets):
    name = train(api, datasets, "prelu", "softmax", True)

    response = api.get(f"/v1/models/{name}/versions/1/weights")
    blob = response.content
    state = safetensors.numpy.load(blob)
    meta = header_metadata(blob)

    assert response.headers["content-disposition"] == f'attachment; filename="{name}-v1.safetensors"'
    # nn.Sequential(Linear(3,5), BatchNorm1d(5), PReLU(5), Dropout(0.1),
    #               Linear(5,4), BatchNorm1d(4), PReLU(4), Dropout(0.1), Linear(4,3))
    shapes = {k: v.shape for k, v in state.items()}
    assert shapes == {
        "0.weight": (5, 3), "0.bias": (5,),
        "1.weight": (5,), "1.bias": (5,), "1.running_mean": (5,), "1.running_var": (5,),
        "1.num_batches_tracked": (),
        "2.weight": (5,),
        "4.weight": (4, 5), "4.bias": (4,),
        "5.weight": (4,), "5.bias": (4,), "5.running_mean": (4,), "5.running_var": (4,),
        "5.num_batches_tracked": (),
        "6.weight": (4,),
        "8.weight": (3, 4), "8.bias": (3,),
    }  # fmt: skip
    assert state["1.num_batches_tracked"].dtype == np.int64
    assert state["0.weight"].dtype == np.float32
    assert meta["format"] == "mlp-lab.model.v1"
    assert json.loads(meta["labels"]) == ["0", "1", "2"]
    assert json.loads(meta["spec"])["layers"] == [3, 5, 4, 3]
    assert meta["sequential"].startswith("nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.PReLU(5)")
    # The README's recipe: standardize with the metadata, then the Sequential.
    standardizer = json.loads(meta["standardizer"])
    x = probe_inputs()
    z = (x - np.array(standardizer["mean"])) / np.array(standardizer["std"])
    modules = modules_of([3, 5, 4, 3], "prelu", None, True, True)
    want = torch_sequential(state, modules, z, "softmax")
    got = np.array(api.predict(name, x.tolist())["outputs"])
    diff = float(np.max(np.abs(got - want)))
    print(f"safetensors download → numpy Sequential max abs diff {diff:.3g}")
    assert diff <= TOLERANCE


def torch_state_dict(layers, activation: str, batch_norm: bool, rng, dtype=np.float32) -> dict:
    """A state dict as `nn.Sequential(...).state_dict()` would have it, with random values."""
    state, index = {}, 0
    for i, (fan_in, fan_out) in enumerate(zip(layers, layers[1:])):
        state[f"{index}.weight"] = (rng.normal(size=(fan_out, fan_in)) / math.sqrt(fan_in)).astype(dtype)
        state[f"{index}.bias"] = rng.normal(scale=0.2, size=fan_out).astype(dtype)
        index += 1
        if i == len(layers) - 2:
            break
        if batch_norm:
            state[f"{index}.weight"] = rng.uniform(0.5, 1.5, size=fan_out).astype(dtype)
            state[f"{index}.bias"] = rng.normal(scale=0.1, size=fan_out).astype(dtype)
            state[f"{index}.running_mean"] = rng.normal(scale=0.3, size=fan_out).astype(dtype)
            state[f"{index}.running_var"] = rng.uniform(0.5, 2.0, size=fan_out).astype(dtype)
            state[f"{index}.num_batches_tracked"] = np.array(100, dtype=np.int64)
            index += 1
        if activation == "prelu":
            state[f"{index}.weight"] = rng.uniform(0.05, 0.4, size=fan_out).astype(dtype)
        index += 1
    return state


IMPORT_CASES = [(a, "softmax", bn) for a in ACTIVATIONS for bn in (False, True)] + [
    ("tanh", "sigmoid", False),
    ("gelu", "identity", True),
]


@pytest.mark.parametrize("activation,head,batch_norm", IMPORT_CASES)
def test_a_numpy_state_dict_imports_and_predicts_what_pytorch_would(
    api, tmp_path, activation, head, batch_norm
):
    layers = [3, 5, 4, HEADS[head]]
    spec = ACTIVATIONS[activation]
    model = api.create_model({"layers": layers, "activation": spec, "output": head, "batch_norm": batch_norm})
    name = model["name"]
    state = torch_state_dict(layers, activation, batch_norm, np.random.default_rng(5))
    path = tmp_path / "model.safetensors"
    safetensors.numpy.save_file(state, str(path))  # no metadata, as from any PyTorch user

    response = api.request(
        "POST",
        f"/v1/models/{name}/versions",
        data=path.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    version = response.json()
    x = probe_inputs() / 10  # raw inputs: without metadata there is no standardization
    answer = api.predict(name, x.tolist())

    assert response.headers["location"] == f"/v1/models/{model['id']}/versions/1"
    assert version["source"] == "import" and version["job"] is None and version["metrics"] is None
    param = spec.get("alpha") if isinstance(spec, dict) else None
    want = torch_sequential(state, modules_of(layers, activation, param, batch_norm, False), x, head)
    got = np.array(answer["outputs"])
    diff = float(np.max(np.abs(got - want)))
    print(f"import {activation:10s} {head:8s} bn={batch_norm!s:5s} max abs diff {diff:.3g}")
    assert diff <= TOLERANCE
    if head == "softmax":  # classes are numbered when the file names none
        assert answer["labels"] == [int(i) for i in np.argmax(want, axis=1)]


def test_a_float64_state_dict_is_converted(api):
    model = api.create_model({"layers": [3, 4, 2], "activation": "relu", "output": "softmax"})
    state = torch_state_dict([3, 4, 2], "relu", False, np.random.default_rng(9), dtype=np.float64)

    response = requests.post(
        api.url(f"/v1/models/{model['name']}/versions"), data=safetensors.numpy.save(state), timeout=60
    )
    x = probe_inputs() / 10
    got = np.array(api.predict(model["name"], x.tolist())["outputs"])

    assert response.status_code == 201, response.text  # no Content-Type at all is accepted
    want = torch_sequential(state, modules_of([3, 4, 2], "relu", None, False, False), x, "softmax")
    assert float(np.max(np.abs(got - want))) <= TOLERANCE


def test_a_tensor_of_the_wrong_shape_is_422_naming_it_and_both_shapes(api):
    model = api.create_model({"layers": [3, 5, 2], "activation": "relu", "output": "softmax"})
    state = torch_state_dict([3, 5, 2], "relu", False, np.random.default_rng(1))
    state["2.weight"] = state["2.weight"].T.copy()  # [5, 2] where [2, 5] belongs

    response = api.request(
        "POST",
        f"/v1/models/{model['name']}/versions",
        data=safetensors.numpy.save(state),
        headers={"Content-Type": "application/octet-stream"},
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert problem["errors"][0]["field"] == "2.weight"
    assert "[2, 5]" in problem["errors"][0]["message"] and "[5, 2]" in problem["errors"][0]["message"]


def test_softplus_stays_finite_and_equal_for_huge_pre_activations(api):
    """Our softplus is max(u,0) + log1p(exp(-|u|)), finite for any u; onnxruntime's Softplus
    must agree where the naive log(1 + exp(u)) overflows (u ≈ ±300 here)."""
    layers = [3, 4, 2]
    model = api.create_model({"layers": layers, "activation": "softplus", "output": "identity"})
    state = torch_state_dict(layers, "softplus", False, np.random.default_rng(2))
    state["0.weight"] *= 100
    api.request(
        "POST", f"/v1/models/{model['name']}/versions", data=safetensors.numpy.save(state), expect=201
    )
    x = probe_inputs()[:4]

    blob = download(api, f"/v1/models/{model['name']}/versions/1/onnx")
    (got,) = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(["output"], {"input": x})
    want = np.array(api.predict(model["name"], x.tolist())["outputs"])

    u = x.astype(np.float64) @ state["0.weight"].T.astype(np.float64) + state["0.bias"]
    assert np.abs(u).max() > 100  # the naive form would overflow in f32 (exp(89) = inf)
    assert np.all(np.isfinite(got))
    scaled = float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))
    print(f"softplus huge pre-activations: max scaled diff {scaled:.3g}")
    assert scaled <= TOLERANCE
