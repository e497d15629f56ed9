# The two quick-start commands of the README: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build found on this kind of machine; anything else pulls CUDA wheels.
INSTALL := $(BIN)/pip install -q -e ".[train,test,track]"

.PHONY: setup system-deps demo test test-fast lint clean

# Debian packages the tests run for real: a Mosquitto broker for art-edge's MQTT events (logins,
# and TLS with certificates the tests make with openssl), GStreamer's RTSP server (through the
# system Python's gi) serving a camera stream, and headless Chromium with its WebDriver for the
# dashboard's browser test; opencv-doc for OpenCV's vtest.avi (pedestrians: benchmarks/tracks.py).
DEBS := mosquitto openssl python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly chromium chromium-driver opencv-doc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(INSTALL)

# The main job on the embedded default (CPU): synthetic data → train art-tiny → INT8 engine → art-edge.
demo: setup
	OMP_NUM_THREADS=2 $(BIN)/python -m art_train.demo --out demo

system-deps:
	@dpkg -s $(DEBS) >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DEBS); }

test: setup system-deps
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -rs

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: setup system-deps
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -rs -m "not slow"

clean:
	rm -rf demo .pytest_cache
