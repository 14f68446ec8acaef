"""Runs an exported pipeline model's model.py in this process: a stand-in for the few names of Triton's
triton_python_backend_utils it uses, whose InferenceRequest.exec runs the repository's own graph model
file (model.onnx) with ONNX Runtime, as Triton's ONNX Runtime backend would. Used by the tests of the
text door (tests/test_emotivoice.py, tests/test_triton.py); the served round trip needs a tritonserver."""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

FINAL = 1


class Tensor:
    def __init__(self, name: str, array):
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self):
        return self._array


class TritonError:
    def __init__(self, message: str):
        self._message = message

    def message(self) -> str:
        return self._message


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None):
        self.output_tensors, self._error = list(output_tensors or []), error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self):
        return self._error


class Sender:
    def __init__(self):
        self.responses, self.final = [], False

    def send(self, response=None, flags=0):
        assert not self.final, "a response after the final flag"
        if response is not None:
            self.responses.append(response)
        self.final = bool(flags & FINAL)


class Request:
    """A client's request: input tensors by name (strings as numpy object arrays of bytes, as Triton gives)."""

    def __init__(self, **inputs):
        self.inputs = {k: Tensor(k, np.array([v.encode() if isinstance(v, str) else v],
                                              dtype=object if isinstance(v, (str, bytes)) else np.float32))
                       for k, v in inputs.items()}
        self.sender = Sender()

    def get_response_sender(self):
        return self.sender


def stub_module(repo: Path, calls: list) -> types.ModuleType:
    """triton_python_backend_utils, with graph requests answered by onnxruntime over repo/<graph>/1/model.onnx."""
    import onnxruntime as ort
    sessions: dict = {}
    m = types.ModuleType("triton_python_backend_utils")

    class InferenceRequest:
        def __init__(self, model_name, requested_output_names, inputs):
            self.model, self.outputs, self.inputs = model_name, requested_output_names, inputs

        def exec(self):
            if self.model not in sessions:
                so = ort.SessionOptions()
                so.intra_op_num_threads = 1
                sessions[self.model] = ort.InferenceSession(str(repo / self.model / "1" / "model.onnx"), so)
            calls.append(self.model)
            feeds = {t.name(): t.as_numpy() for t in self.inputs}
            got = sessions[self.model].run(self.outputs, feeds)
            return InferenceResponse([Tensor(n, v) for n, v in zip(self.outputs, got)])

    m.Tensor, m.TritonError, m.InferenceResponse, m.InferenceRequest = Tensor, TritonError, InferenceResponse, InferenceRequest
    m.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL
    m.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)
    m.get_output_tensor_by_name = lambda response, name: next(t for t in response.output_tensors if t.name() == name)
    m.using_decoupled_model_transaction_policy = lambda cfg: bool(
        cfg.get("model_transaction_policy", {}).get("decoupled", False))
    return m


def load_model(repo: Path, name: str, calls: list):
    """The model.py of repo/<name>, initialised as Triton would (its config as JSON)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2
    cfg = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config_json = json.dumps(json_format.MessageToDict(cfg, preserving_proto_field_name=True))
    saved_path, saved_utils = list(sys.path), sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = stub_module(repo, calls)
    try:
        spec = importlib.util.spec_from_file_location(f"served_{name}", repo / name / "1" / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.TritonPythonModel()
        model.initialize({"model_config": config_json})
    finally:
        sys.path[:] = saved_path
    return model


def waveform(response, name: str = "waveform") -> np.ndarray:
    assert not response.has_error(), response.error().message()
    return next(t for t in response.output_tensors if t.name() == name).as_numpy()
