# The two quick-start commands, `make demo` and `make test`, on a fresh machine.
# Each creates the virtual environment it needs (.venv) on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint models tflite-runtime-env

# Runtime only (numpy, ai-edge-litert, cherrypy, paho-mqtt, ...): what the demo needs.
$(BIN)/.runtime-installed: requirements/runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements/runtime.txt
	touch $@

# Everything, TensorFlow included: the tests compare our numpy features with tf.signal.
$(BIN)/.all-installed: requirements.txt requirements/runtime.txt requirements/training.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $(BIN)/.runtime-installed $@

demo: $(BIN)/.runtime-installed
	$(BIN)/python demo.py $(ARGS)

test: $(BIN)/.all-installed
	$(BIN)/python -m pytest $(ARGS)

lint: $(BIN)/.all-installed
	$(BIN)/ruff check .

# Retrain every shipped model (about an hour on two CPU cores).
models: $(BIN)/.all-installed
	$(BIN)/python train.py --all $(ARGS)
