"""A voxc family's pipeline as a Triton Python-backend model (BLS); `voxc export triton` ships this file
as <repository>/<model>/1/model.py with pipeline.json and the numpy-only voxc modules beside it.

Each request's inputs (phoneme ids, the reference mel, ...) go through the family's dataflow
(models/pipeline.py, the same code `voxc.open(folder).pipeline()` runs): host steps run here, every
graph step is an InferenceRequest to that graph's model in the repository. Not a voxc module at run
time: it imports triton_python_backend_utils, which only Triton's Python backend provides.

Non-decoupled: one response, the whole waveform. Decoupled (model_transaction_policy decoupled):
the host steps and graphs up to the last graph run once, then the last graph (the vocoder) runs over
chunks of its length axis with context either side (targets/split.py: stream, the chunking the
build's streaming gate accepted) and each finished piece of audio is sent as soon as it is ready.
"""
import json
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))      # the shipped voxc modules, before any installed voxc


class GraphModel:
    """A runner (infer(dict) -> dict, keyed by spec names) that calls a graph's model in the repository."""

    def __init__(self, model: str, outputs: list[str]):
        self.model, self.outputs = model, outputs

    def infer(self, feeds: dict) -> dict:
        request = pb_utils.InferenceRequest(
            model_name=self.model, requested_output_names=self.outputs,
            inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in feeds.items()])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{self.model}: {response.error().message()}")
        return {n: pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in self.outputs}


class TritonPythonModel:
    def initialize(self, args):
        from voxc.models.family import family
        from voxc.models.pipeline import Pipeline
        from voxc.models.spec import spec_from_json
        self.doc = json.loads((HERE / "pipeline.json").read_text())
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(json.loads(args["model_config"]))
        specs = {g: spec_from_json(g, j) for g, j in self.doc["specs"].items()}
        runners = {g: GraphModel(self.doc["models"][g], [t.name for t in s.outputs]) for g, s in specs.items()}
        self.pipeline = Pipeline(family(self.doc["family"]), self.doc["config"], runners, specs)

    def _values(self, request) -> dict:
        values = {}
        for name, info in self.doc["inputs"].items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                a = tensor.as_numpy()
                values[name] = a.reshape(-1)[0].item() if info.get("scalar") else a
        return values

    def _response(self, audio: np.ndarray):
        out = pb_utils.Tensor(self.doc["output"], np.ascontiguousarray(audio, dtype=np.float32).reshape(-1))
        return pb_utils.InferenceResponse(output_tensors=[out])

    def execute(self, requests):
        if self.decoupled:
            for request in requests:
                self._stream(request)
            return None
        out = []
        for request in requests:
            try:
                run = self.pipeline.run(self._values(request), [self.doc["output"]])
                out.append(self._response(run.values[self.doc["output"]]))
            except Exception as exc:  # noqa: BLE001 -- a bad request is answered, never kills the model
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return out

    def _stream(self, request):
        from voxc.targets.split import stream
        sender = request.get_response_sender()
        s = self.doc["stream"]
        try:
            step = self.pipeline.family.step_of(s["graph"])
            value = step.inputs.get(s["input"], s["input"])
            feeds = {s["input"]: self.pipeline.run(self._values(request), [value]).values[value]}
            runner = self.pipeline.runners[s["graph"]]
            for piece in stream(runner.infer, feeds, s["input"], s["output"], s["hop"], s["chunk"], s["first"],
                                s["context"], s["min_len"]):
                sender.send(self._response(piece))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # noqa: BLE001
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
