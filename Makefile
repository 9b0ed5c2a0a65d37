# Two commands for a fresh machine: `make demo` (the main job on the bundled
# sample corpus) and `make test`. Both build .venv first, with the install
# recipe that the Dataflow worker image uses too (scripts/install.sh).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean constraints

$(BIN)/grepq: requirements.txt constraints.txt setup.py scripts/install.sh
	$(PY) -m venv $(VENV)
	bash scripts/install.sh --editable $(BIN)/python gcp,test
	touch $@

install: $(BIN)/grepq

demo: install
	rm -rf demo_out
	$(BIN)/grepq run --input 'samples/*.jpg' --output demo_out --labels samples/labels.csv --pathways ll --scale 1,5 --keep-top-fraction 0.75

test: install
	$(BIN)/python -m pytest -q tests

# After changing requirements.txt or setup.py's dependencies: edit or drop the
# lines of constraints.txt that conflict, `make install`, then `make
# constraints` re-pins constraints.txt to exactly what resolved in .venv.
constraints: install
	{ sed -n '/^#/p;/^#/!q' constraints.txt; $(BIN)/pip freeze --all --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	touch $(BIN)/grepq

clean:
	rm -rf $(VENV) demo_out
