"""TensorRT on the device: regime choice, engine build, fingerprint gate, and a numpy runner.

This module is shipped inside device bundles, so it needs only Python, numpy and TensorRT
(imported lazily; CUDA is reached through libcuda/libcudart with ctypes, no PyTorch, no pycuda).

One config drives both TensorRT regimes:
* weak typing (TensorRT 10.x, what JetPack ships): fp16 = the fp32 ONNX + BuilderFlag.FP16;
  int8 = the explicit-QDQ ONNX + INT8/FP16 flags, or the fp32 ONNX + a calibration cache;
* strong typing (TensorRT 11, optional on 10): the network is STRONGLY_TYPED and precision comes
  from the ONNX itself: fp16 = the mixed-precision ONNX, int8 = the explicit-QDQ ONNX. TensorRT 11
  has no FP16/INT8 flags or calibrators, so `plan()` never asks for them there.
Engines are device- and version-specific: `save_engine` writes a fingerprint beside each engine
and `load_engine` compares it with this device before deserializing anything.
"""
from __future__ import annotations

import ctypes
import json
import platform
from pathlib import Path

import numpy as np

from voxc.core.atomic import write_atomic
from voxc.core.errors import VoxcError, first_line

MUST_MATCH = ("tensorrt", "gpu", "compute_capability", "l4t")


class EngineMismatch(VoxcError):
    pass


# ---- regime and build plan (pure: tested on any host) ---------------------------------------------
def regime(trt_version: str, requested: str = "auto") -> str:
    """'weak' or 'strong' for this TensorRT version; TensorRT 11 has only strong typing."""
    major = int(str(trt_version).split(".")[0])
    if requested == "auto":
        return "strong" if major >= 11 else "weak"
    if requested not in ("weak", "strong"):
        raise VoxcError(f"unknown TensorRT typing regime '{requested}': use auto, weak or strong")
    if requested == "weak" and major >= 11:
        raise VoxcError(f"TensorRT {trt_version} removed weak typing (FP16/INT8 builder flags); use regime auto or strong")
    return requested


def plan(precision: str, regime_name: str, files: dict[str, str]) -> dict:
    """Which ONNX file, builder flags and network flags build `precision` under a regime.

    files maps "fp32" (plain ONNX), "fp16" (mixed-precision ONNX), "int8" (explicit QDQ ONNX) and
    "calibration_cache" to bundle paths; only what the chosen recipe needs must be present.
    """
    def need(key: str, why: str) -> str:
        if not files.get(key):
            raise VoxcError(f"{precision} under {regime_name} typing needs the {why}, which this bundle lacks; "
                            f"rebuild the bundle with {precision} in the target profile")
        return files[key]
    if precision not in ("fp32", "fp16", "int8"):
        raise VoxcError(f"TensorRT precision '{precision}' is not supported: use fp32, fp16 or int8")
    if regime_name == "strong":
        key = {"fp32": ("fp32", "fp32 ONNX"), "fp16": ("fp16", "mixed-precision fp16 ONNX"),
               "int8": ("int8", "explicit-QDQ int8 ONNX")}[precision]
        return {"onnx": need(*key), "builder_flags": [], "network_flags": ["STRONGLY_TYPED"], "calibration_cache": None}
    if precision == "fp32":
        return {"onnx": need("fp32", "fp32 ONNX"), "builder_flags": [], "network_flags": [], "calibration_cache": None}
    if precision == "fp16":
        return {"onnx": need("fp32", "fp32 ONNX"), "builder_flags": ["FP16"], "network_flags": [],
                "calibration_cache": None}
    if files.get("int8"):
        return {"onnx": files["int8"], "builder_flags": ["INT8", "FP16"], "network_flags": [], "calibration_cache": None}
    return {"onnx": need("fp32", "fp32 ONNX"), "builder_flags": ["INT8", "FP16"], "network_flags": [],
            "calibration_cache": need("calibration_cache", "explicit-QDQ int8 ONNX or an INT8 calibration cache")}


def select_profile(profiles: list[dict], sizes: dict[str, int]) -> int:
    """Index of the narrowest profile whose ranges hold every size; VoxcError when none does."""
    fits = [(sum(p["ranges"][k][2] - p["ranges"][k][0] for k in p["ranges"]), i) for i, p in enumerate(profiles)
            if all(p["ranges"][k][0] <= v <= p["ranges"][k][2] for k, v in sizes.items() if k in p["ranges"])]
    if not fits:
        limits = {k: [min(p["ranges"][k][0] for p in profiles), max(p["ranges"][k][2] for p in profiles)]
                  for k in profiles[0]["ranges"]}
        raise VoxcError(f"sizes {sizes} fall outside every optimization profile {limits}; split the input "
                        f"(split.py: vocoder chunks with overlap) or rebuild with larger ranges")
    return min(fits)[1]


# ---- fingerprints ---------------------------------------------------------------------------------
def mismatches(recorded: dict, current: dict) -> list[str]:
    """'key: recorded X, this device Y' for every fingerprint field an engine depends on."""
    out = []
    for key in MUST_MATCH:
        a, b = recorded.get(key), current.get(key)
        if (a or b) and a != b:
            out.append(f"{key}: engine built with {a or 'none'}, this device has {b or 'none'}")
    return out


def check_compatible(engine: Path, recorded: dict, current: dict, rebuild: str) -> None:
    problems = mismatches(recorded, current)
    if problems:
        raise EngineMismatch(f"engine {engine} does not match this device ({'; '.join(problems)}); "
                             f"rebuild it with: {rebuild}")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _l4t() -> str | None:
    text = _read("/etc/nv_tegra_release")  # "# R36 (release), REVISION: 3.0, ..."
    if not text:
        return None
    head = text.splitlines()[0].lstrip("# ")
    parts = dict(p.strip().split(": ", 1) if ": " in p else (p.strip(), "") for p in head.split(","))
    release = head.split(" ")[0]
    return f"{release}.{parts.get('REVISION', '?')}"


def _cuda_device() -> dict:
    """GPU name, compute capability and driver CUDA version through the driver API (libcuda)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return {}
    if lib.cuInit(0) != 0:
        return {}
    dev, ver, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    lib.cuDriverGetVersion(ctypes.byref(ver))
    lib.cuDeviceGet(ctypes.byref(dev), 0)
    lib.cuDeviceGetName(name, 256, dev)
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ..._MINOR
    return {"gpu": name.value.decode(), "compute_capability": f"{major.value}.{minor.value}",
            "cuda_driver_api": f"{ver.value // 1000}.{ver.value % 1000 // 10}"}


def device_fingerprint() -> dict:
    """What an engine built here depends on: TensorRT, GPU, compute capability, CUDA/driver, L4T."""
    fp: dict = {"machine": platform.machine()}
    try:
        import tensorrt as trt
        fp["tensorrt"] = trt.__version__
    except Exception as exc:  # noqa: BLE001 -- any import failure means "no TensorRT here"
        fp["tensorrt"] = None
        fp["tensorrt_error"] = f"{type(exc).__name__}: {first_line(exc)}"
    fp.update(_cuda_device())
    driver = _read("/proc/driver/nvidia/version")
    if driver:
        fp["driver"] = driver.splitlines()[0][:160]
    fp["l4t"] = _l4t()
    return fp


# ---- TensorRT itself (thin: runs only where TensorRT and a GPU exist) --------------------------------
def _trt():
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001
        raise VoxcError(f"TensorRT is not importable here ({type(exc).__name__}: {first_line(exc)}); "
                        "install it (JetPack ships it; on x86: pip install 'voxc[tensorrt]')") from None
    return trt


def build_engine(onnx_path: Path, recipe: dict, profiles: list[dict], workspace_mb: int, dla_core: int | None,
                 timing_cache: Path | None) -> bytes:
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for f in recipe["network_flags"]:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, f))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise VoxcError(f"TensorRT cannot parse {onnx_path}: {errors[:400]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    for f in recipe["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, f))
    if dla_core is not None and dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if recipe.get("calibration_cache"):
        config.int8_calibrator = _cache_calibrator(trt, Path(recipe["calibration_cache"]))
    blob = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, False)
    for p in profiles:
        prof = builder.create_optimization_profile()
        for name, s in p["shapes"].items():
            prof.set_shape(name, s["min"], s["opt"], s["max"])
        config.add_optimization_profile(prof)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise VoxcError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    if timing_cache:
        write_atomic(timing_cache, bytes(cache.serialize()))
    return bytes(serialized)


def _cache_calibrator(trt, path: Path):
    class CacheCalibrator(trt.IInt8EntropyCalibrator2):  # replays a calibration cache; never sees data
        def __init__(self):
            super().__init__()

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return path.read_bytes()

        def write_calibration_cache(self, cache):
            return None
    return CacheCalibrator()


def save_engine(path: Path, engine: bytes, fingerprint: dict, meta: dict) -> None:
    """Engine bytes and their fingerprint sidecar (<engine>.json), each written atomically."""
    write_atomic(path.with_name(path.name + ".json"),
                  json.dumps({"fingerprint": fingerprint, **meta}, indent=1, sort_keys=True).encode())
    write_atomic(path, engine)


def read_sidecar(path: Path) -> dict:
    side = path.with_name(path.name + ".json")
    if not side.is_file():
        raise EngineMismatch(f"engine {path} has no fingerprint ({side.name}); rebuild it")
    return json.loads(side.read_text())


def load_engine(path: Path, current: dict, rebuild: str):
    """Compare the recorded fingerprint with this device first; deserialize only when they match."""
    check_compatible(path, read_sidecar(path)["fingerprint"], current, rebuild)
    trt = _trt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise VoxcError(f"TensorRT could not deserialize {path}; rebuild it with: {rebuild}")
    return engine


def pip_cudart() -> tuple[str, ...]:
    """libcudart files that pip's NVIDIA wheels (nvidia-cuda-runtime-cu12, the CUDA 13 runtime wheel) unpack into
    site-packages, where the dynamic loader does not look."""
    import sys
    found = []
    for entry in sys.path:
        root = Path(entry or ".") / "nvidia"
        if root.is_dir():
            found += sorted(str(p) for p in root.glob("**/lib/libcudart.so*"))
    return tuple(found)


class _Cudart:
    """cudaMalloc/cudaMemcpy/cudaFree through ctypes (the CUDA runtime that TensorRT links)."""

    def __init__(self):
        for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0") + pip_cudart():
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise VoxcError("libcudart (the CUDA runtime) was not found on the loader path nor in pip's nvidia "
                            "packages; install the CUDA toolkit, or pip install nvidia-cuda-runtime-cu12 (CUDA 12), "
                            "or use JetPack's python3 on a Jetson")

    def _ok(self, code: int, what: str) -> None:
        if code != 0:
            raise VoxcError(f"CUDA {what} failed with error {code}")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._ok(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return ptr.value

    def copy(self, dst, src, nbytes: int, kind: int) -> None:  # 1: host->device, 2: device->host
        self._ok(self.lib.cudaMemcpy(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), kind),
                 "cudaMemcpy")

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def sync(self) -> None:
        self._ok(self.lib.cudaDeviceSynchronize(), "cudaDeviceSynchronize")


class TrtRunner:
    """infer(dict of numpy arrays) -> dict, choosing the optimization profile from the input sizes."""

    def __init__(self, engine, profiles: list[dict], inputs: list[dict]):
        self.name = "tensorrt"
        self.trt = _trt()
        self.engine, self.profiles, self.inputs = engine, profiles, inputs
        self.context = engine.create_execution_context()
        self.cuda = _Cudart()
        self.profile = 0
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == self.trt.TensorIOMode.OUTPUT]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes: dict[str, int] = {}
        for t in self.inputs:
            for axis, d in enumerate(t["dims"]):
                if isinstance(d, str):
                    sizes[d] = int(feeds[t["name"]].shape[axis])
        index = select_profile(self.profiles, sizes)
        if index != self.profile or not hasattr(self, "_set"):
            self.context.set_optimization_profile_async(index, 0)
            self.profile, self._set = index, True
        buffers = []
        try:
            for t in self.inputs:
                arr = np.ascontiguousarray(feeds[t["name"]].astype(self.trt.nptype(self.engine.get_tensor_dtype(t["name"]))))
                self.context.set_input_shape(t["name"], arr.shape)
                ptr = self.cuda.malloc(arr.nbytes)
                buffers.append(ptr)
                self.cuda.copy(ptr, arr.ctypes.data, arr.nbytes, 1)
                self.context.set_tensor_address(t["name"], ptr)
            host = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                host[name] = np.empty(shape, dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))
                ptr = self.cuda.malloc(host[name].nbytes)
                buffers.append(ptr)
                self.context.set_tensor_address(name, ptr)
            if not self.context.execute_async_v3(0):
                raise VoxcError("TensorRT execution failed")
            self.cuda.sync()
            for name, ptr in zip(self.outputs, buffers[len(self.inputs):]):
                self.cuda.copy(host[name].ctypes.data, ptr, host[name].nbytes, 2)
        finally:
            for ptr in buffers:
                self.cuda.free(ptr)
        return {k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in host.items()}
