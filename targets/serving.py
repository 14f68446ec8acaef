"""How Triton Inference Server serves each backend's accepted artifact (read by compiler/triton.py).

Per runtime: the config.pbtxt field that picks Triton's backend (`platform` or `backend`), which artifact
files (by their manifest role) go into the model's version folder under which Triton file name, the instance kind, the backend's
parameters that set its CPU threads per instance (`{threads}` is filled in), and, for
runtimes whose artifact is built on the serving device (TensorRT engines), the command that builds it
there from the host-validated ONNX. Kept apart from the backend modules so that it keys no build stage.
"""
from __future__ import annotations

from voxc.core.errors import VoxcError

TRITON = {
    "onnxruntime": {"field": "platform", "value": "onnxruntime_onnx", "files": {"model": "model.onnx"},
                    "kind": "KIND_CPU",
                    "threads": {"intra_op_thread_count": "{threads}", "inter_op_thread_count": "1"}},
    "openvino": {"field": "backend", "value": "openvino", "files": {"model": "model.xml", "weights": "model.bin"},
                 "kind": "KIND_CPU", "threads": {"INFERENCE_NUM_THREADS": "{threads}", "NUM_STREAMS": "1"}},
    # An engine is specific to the GPU and TensorRT version it was built with: one built on this host
    # (x86-cuda with a GPU) ships as model.plan; otherwise the plan is built on the serving device.
    "tensorrt": {"field": "platform", "value": "tensorrt_plan", "files": {"engine": "model.plan"},
                 "kind": "KIND_GPU",
                 "device_build": "trtexec --onnx={onnx} --saveEngine={plan} --minShapes={min} --optShapes={opt} "
                                 "--maxShapes={max}"},
}


def triton(runtime: str) -> dict:
    if runtime not in TRITON:
        raise VoxcError(f"Triton has no backend for {runtime} artifacts; export a target built for one of "
                        f"{', '.join(TRITON)}")
    return TRITON[runtime]
