"""The Open Inference Protocol (/v2) with NVIDIA's own client, `tritonclient.http`, against the
live server: health, metadata, readiness, and inference with JSON and binary tensors both ways,
whose numbers must equal those of /v1/models/{m}/predict.

Equality is exact, not approximate: both routes run the same `Model::predict` on the same f32
inputs. The client sends float32 arrays (as JSON numbers that spell the float32 exactly, or as
raw bytes); /v1 gets the same float32 values as JSON numbers. /v1 answers float32 outputs as
their shortest decimal form, which reads back to the same float32; /v2 answers them the same
way in JSON, or as their raw bytes. So `np.array_equal` on float32 arrays must hold.
"""

from urllib.parse import urlparse

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

ROWS = np.array(
    [[0.1, 0.2], [1.0000001, -0.033], [-1.25, 0.75], [0.5, -0.5], [2.0, 3.0]],
    dtype=np.float32,
)


@pytest.fixture(scope="module")
def client(base_url):
    url = urlparse(base_url)
    return httpclient.InferenceServerClient(url=url.netloc, ssl=url.scheme == "https")


@pytest.fixture(scope="module")
def classifier(api) -> str:
    """A trained 3-class softmax model on spirals, with standardized inputs."""
    model = api.create_model(
        {"layers": [2, 8, 3], "activation": "tanh", "output": "softmax"}
    )
    dataset = {"generator": {"kind": "spirals", "samples": 150, "classes": 3, "seed": 3}}
    api.train(model["name"], dataset, epochs=5, standardize=True)
    return model["name"]


def v1(api, model: str, rows: np.ndarray):
    answer = api.predict(model, rows.tolist())
    return np.array(answer["outputs"], dtype=np.float32), [str(l) for l in answer["labels"]]


def fp32_input(rows: np.ndarray, binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return tensor


def test_server_is_live_and_ready_and_describes_itself(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "mlp-lab"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_and_readiness(client, api, classifier):
    metadata = client.get_model_metadata(classifier)
    assert metadata["name"] == classifier
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 2]}]
    assert metadata["outputs"] == [
        {"name": "output", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    assert client.get_model_metadata(classifier, model_version="1") == metadata
    assert client.is_model_ready(classifier)
    assert client.is_model_ready(classifier, model_version="1")
    assert not client.is_model_ready(classifier, model_version="2")
    assert not client.is_model_ready("no-such-model")
    untrained = api.create_model({"layers": [2, 1], "output": "sigmoid"})["name"]
    assert not client.is_model_ready(untrained)


def test_json_inputs_and_json_outputs_equal_v1(client, api, classifier):
    want, labels = v1(api, classifier, ROWS)
    outputs = [
        httpclient.InferRequestedOutput("output", binary_data=False),
        httpclient.InferRequestedOutput("label", binary_data=False),
    ]

    result = client.infer(
        classifier, [fp32_input(ROWS, binary=False)], outputs=outputs, request_id="py-1"
    )

    got = result.as_numpy("output")
    assert got.dtype == np.float32 and got.shape == (5, 3)
    assert np.array_equal(got, want)
    assert [l.decode() if isinstance(l, bytes) else l for l in result.as_numpy("label")] == labels
    response = result.get_response()
    assert response["id"] == "py-1"
    assert response["model_name"] == classifier and response["model_version"] == "1"


def test_binary_inputs_and_binary_outputs_equal_v1(client, api, classifier):
    want, labels = v1(api, classifier, ROWS)

    # No `outputs`: the client asks for every output, in binary.
    result = client.infer(classifier, [fp32_input(ROWS, binary=True)])

    assert result.get_output("output")["parameters"]["binary_data_size"] == ROWS.shape[0] * 3 * 4
    assert np.array_equal(result.as_numpy("output"), want)
    assert [l.decode() for l in result.as_numpy("label")] == labels


def test_binary_inputs_with_a_json_output_and_a_version(client, api, classifier):
    want, _ = v1(api, classifier, ROWS)

    result = client.infer(
        classifier,
        [fp32_input(ROWS, binary=True)],
        model_version="1",
        outputs=[httpclient.InferRequestedOutput("output", binary_data=False)],
    )

    assert [o["name"] for o in result.get_response()["outputs"]] == ["output"]
    assert "data" in result.get_output("output")
    assert np.array_equal(result.as_numpy("output"), want)


def test_fp64_inputs_are_converted_to_fp32(client, api, classifier):
    want, _ = v1(api, classifier, ROWS)
    tensor = httpclient.InferInput("input", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS.astype(np.float64), binary_data=True)

    result = client.infer(classifier, [tensor])

    assert np.array_equal(result.as_numpy("output"), want)


def test_errors_reach_the_client_with_their_message(client, classifier):
    with pytest.raises(InferenceServerException, match="no-such-model"):
        client.infer("no-such-model", [fp32_input(ROWS, binary=True)])
    wide = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(InferenceServerException, match=r"\[-1, 2\]"):
        client.infer(classifier, [fp32_input(wide, binary=False)])
    ints = httpclient.InferInput("input", [1, 2], "INT32")
    ints.set_data_from_numpy(np.zeros((1, 2), dtype=np.int32))
    with pytest.raises(InferenceServerException, match="INT32"):
        client.infer(classifier, [ints])
    with pytest.raises(InferenceServerException, match="unknown output 'scores'"):
        client.infer(
            classifier,
            [fp32_input(ROWS, binary=True)],
            outputs=[httpclient.InferRequestedOutput("scores")],
        )
