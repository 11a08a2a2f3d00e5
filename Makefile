# d2l-zoo: `make demo` sets everything up, trains LeNet briefly and evaluates the bundled pretrained
# LeNet; `make test` runs the test suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser demo test clean

setup: $(VENV)/.installed

# pyproject.toml's ranges resolve to torch 2.14.1 / torchvision 0.29.1 here (taken from local disk).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

# Fashion-MNIST from Debian's package, unless ZOO_DATA_DIR already points at the four .gz files.
data:
	@if [ -n "$$ZOO_DATA_DIR" ] || [ -f $(DATA)/t10k-labels-idx1-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'," \
		     "or set ZOO_DATA_DIR to a folder with the four .gz files."; exit 1; \
	fi

# Chromium from Debian for the browser test of `zoo demo` (Playwright drives it; its own browser
# download is not used).
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium; \
	else \
		echo "Chromium is missing: run 'sudo apt-get install chromium' (the browser test of zoo demo needs it)."; exit 1; \
	fi

demo: setup data
	$(VENV)/bin/zoo list
	$(VENV)/bin/zoo train lenet --epochs 3
	$(VENV)/bin/zoo eval lenet --source bundled

test: setup data browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
