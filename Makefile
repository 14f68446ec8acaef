# voxc: `make engines` builds the default target; `make test` runs the test suite.
# make engines [TARGET=cpu|onnxruntime|openvino|apple|jetson|x86-cuda|x86-cuda-ort] [FAMILY=voxc|emotivoice]
#              [PRESET=...] [FROM=DIR (import a voice, e.g. an EmotiVoice checkout)] [ARGS="..."]
# Both create .venv on first use and install the pinned dependencies from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
TARGET ?= cpu
FAMILY ?= voxc
PRESET ?=
FROM   ?=
ARGS   ?=
VOXC   := $(VENV)/bin/voxc

.PHONY: engines test test-fast parity bench corpus clean distclean triton-server

# PyTorch's CPU build comes from its CPU index when that is reachable (plain PyPI gives Linux the CUDA
# build); TORCH_INDEX= (empty) skips it, e.g. where pip's own index already serves the CPU build.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] && $(VENV)/bin/python -c "import urllib.request; urllib.request.urlopen('$(TORCH_INDEX)/torch/', timeout=5)" 2>/dev/null; then \
	  echo "torch==2.13.0 (CPU) from $(TORCH_INDEX)"; \
	  $(VENV)/bin/pip install -q torch==2.13.0 --index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple; \
	else echo "$(TORCH_INDEX) is not reachable: torch==2.13.0 comes from pip's configured index"; fi
	$(VENV)/bin/pip install -q -e '.[build,serve,test]'
	touch $@

engines: $(VENV)/.installed
	$(VOXC) build --target $(TARGET) --family $(FAMILY) $(if $(PRESET),--preset $(PRESET)) $(if $(FROM),--from $(FROM)) $(ARGS)

parity: $(VENV)/.installed
	$(VOXC) parity --target $(TARGET)

bench: $(VENV)/.installed
	$(VOXC) bench --target $(TARGET) $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile $(ARGS)

# the fast loop: everything not marked slow (no end-to-end builds of whole targets)
test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile -m "not slow" $(ARGS)

# A tritonserver (2.51, Python backend only; ~55 MB wheel, x86-64 Linux) for tests/test_triton.py's served
# checks. --no-deps: nvidia-pytriton pins numpy < 2; only its bundled server binary is used, never imported.
# Where the wheel does not install (not x86-64 Linux, glibc < 2.35) those checks skip and say why.
triton-server: $(VENV)/.triton
$(VENV)/.triton: $(VENV)/.installed
	$(VENV)/bin/pip install -q --no-deps nvidia-pytriton==0.7.0 || echo "no nvidia-pytriton here: served Triton tests skip"
	touch $@

corpus: $(VENV)/.installed
	$(VENV)/bin/python -m voxc.calibration.corpus --out artifacts/corpus

clean:
	rm -rf artifacts/cache artifacts/$(TARGET)

distclean:
	rm -rf $(VENV) artifacts/cache artifacts/*/
