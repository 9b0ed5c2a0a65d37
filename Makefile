# Two commands for a fresh machine: `make demo` (the main job on the bundled
# sample corpus) and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

$(BIN)/grepq: requirements.txt setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -e '.[gcp,test]'
	$(BIN)/pip install -q --no-deps brisque==0.2.0  # BRISQUE's trained model files only
	touch $@

install: $(BIN)/grepq

demo: install
	rm -rf demo_out
	$(BIN)/grepq run --input 'samples/*.jpg' --output demo_out --labels samples/labels.csv --pathways ll --scale 1,5 --keep-top-fraction 0.75

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) demo_out
