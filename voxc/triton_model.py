"""A voxc family's speech as a Triton Python-backend model (BLS); `voxc export triton` ships this file as
<repository>/<model>/1/model.py with pipeline.json and the voxc modules it runs beside it.

A request carries what `voxc serve` takes in POST /v1/audio/speech: `text` (BYTES, UTF-8), and optionally
`voice`, `speaker` (where the family has one), `style` or its alias `emotion` (BYTES) and `speed` (FP32).
It is spoken by voxc.runtime's Voice -- the front end, text segmentation, embedding cache and speaking
code `voxc speak` and `voxc serve` run, not a second implementation -- over the family's pipeline
(models/pipeline.py), whose every graph step is an InferenceRequest to that graph's model in the
repository. Not a voxc module at run time: it imports triton_python_backend_utils, which only Triton's
Python backend provides.

Non-decoupled: one response, the whole waveform. Decoupled (model_transaction_policy decoupled): Voice.stream
runs the last graph (the vocoder) over chunks of its length axis with context either side (the chunking the
build's streaming gate accepted) and each finished piece of audio is a response as soon as it is ready.
A bad request (unknown voice, empty text, a non-UTF-8 string) is answered with its one-line error.
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


class ServedTarget:
    """The built target as voxc.runtime.Voice reads it, made from pipeline.json: the preset, the graphs'
    manifest records it needs (dims, weights), and the pipeline over the repository's graph models."""

    def __init__(self, doc: dict, pipeline):
        from types import SimpleNamespace
        self.config, self._pipeline = doc["config"], pipeline
        # the parts of core/target.py's typed Manifest and ParityReport that the runtime reads; the stream
        # settings come from pipeline.json (the build's accepted ones), set on the Voice after it is made
        self.manifest = SimpleNamespace(doc=doc["manifest"],
                                        models={g: SimpleNamespace(io=io) for g, io in doc["specs"].items()})
        self.parity = SimpleNamespace(streams=dict)

    def pipeline(self, runtime=None, threads=None):
        return self._pipeline


class BadRequest(ValueError):
    pass


class TritonPythonModel:
    def initialize(self, args):
        from voxc.models.family import family
        from voxc.models.pipeline import Pipeline
        from voxc.models.spec import spec_from_json
        from voxc.core.target import StreamSettings
        from voxc.runtime import Voice
        self.doc = json.loads((HERE / "pipeline.json").read_text())
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(json.loads(args["model_config"]))
        specs = {g: spec_from_json(g, j) for g, j in self.doc["specs"].items()}
        runners = {g: GraphModel(self.doc["models"][g], [t.name for t in s.outputs]) for g, s in specs.items()}
        pipeline = Pipeline(family(self.doc["family"]), self.doc["config"], runners, specs)
        arrays = np.load(HERE / "voices.npz") if (HERE / "voices.npz").is_file() else {}
        voices = {name: {k: arrays[v["npz"]] if isinstance(v, dict) and "npz" in v else v for k, v in opts.items()}
                  for name, opts in self.doc.get("voices", {}).items()}
        self.voice = Voice(ServedTarget(self.doc, pipeline), voices=voices)
        stream = self.doc.get("stream") or {}
        if "skipped" not in stream and stream:
            self.voice.streaming = StreamSettings(**stream)

    def _request(self, request) -> tuple[str, str | None, dict]:
        """(text, voice, options) of a request, as the HTTP server reads its JSON body."""
        values = {}
        for name, info in self.doc["inputs"].items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                continue
            a = tensor.as_numpy().reshape(-1)
            if a.size != 1:
                raise BadRequest(f"input '{name}' must hold one element, got {a.size}")
            v = a[0]
            if info["dtype"] == "string":
                try:
                    v = v.decode("utf-8") if isinstance(v, bytes) else str(v)
                except UnicodeDecodeError:
                    raise BadRequest(f"input '{name}' is not UTF-8 text") from None
            else:
                v = float(v)
                if not np.isfinite(v) or v <= 0:
                    raise BadRequest(f"input '{name}' must be a positive finite number, got {v}")
            values[name] = v
        if "text" not in values:
            raise BadRequest("input 'text' is required")
        style = values.get("style", values.get("emotion"))
        speed = values.get("speed")
        options = {"style": style, "speed": speed if speed != 1.0 else None, "speaker": values.get("speaker")}
        return values["text"], values.get("voice"), {k: v for k, v in options.items() if v is not None}

    def _response(self, audio: np.ndarray):
        out = pb_utils.Tensor(self.doc["output"], np.ascontiguousarray(audio, dtype=np.float32).reshape(-1))
        return pb_utils.InferenceResponse(output_tensors=[out])

    @staticmethod
    def _error(exc: Exception):
        """A request's own mistake in its one line (as the server answers it); anything else named by type."""
        from voxc.core.errors import VoxcError
        told = isinstance(exc, (BadRequest, VoxcError))
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc) if told else f"{type(exc).__name__}: {exc}"))

    def execute(self, requests):
        if self.decoupled:
            for request in requests:
                self._stream(request)
            return None
        out = []
        for request in requests:
            try:
                text, voice, options = self._request(request)
                out.append(self._response(self.voice.speak(text, voice, **options).audio))
            except Exception as exc:  # noqa: BLE001 -- a bad request is answered, never kills the model
                out.append(self._error(exc))
        return out

    def _stream(self, request):
        sender = request.get_response_sender()
        try:
            text, voice, options = self._request(request)
            for piece in self.voice.stream(text, voice, **options):
                sender.send(self._response(piece))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # noqa: BLE001
            sender.send(self._error(exc), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
