# Quick start: `make demo` (the whole chain on embedded synthetic data) and `make test`.
# Each target creates .venv when missing and installs the project into it (editable).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision pinned together: the pair that imports on this platform's wheels.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed-stamp
DEMO_DATA ?= data/synthetic
DEMO_RUN ?= runs/demo

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	@start=$$(date +%s); \
	set -e; \
	test -d $(DEMO_DATA)/leftImg8bit || $(PY) train/make_synthetic.py --out $(DEMO_DATA) --num 160 --num-val 40 --size 256 512 --seed 0; \
	$(PY) models/init_checkpoint.py --out $(DEMO_RUN)/init --base-width 16 --img-size 256 512; \
	$(PY) train/evaluate.py --ckpt $(DEMO_RUN)/init/init.pt --dataset synthetic --data-path $(DEMO_DATA) \
		--split val --json $(DEMO_RUN)/init/val_report.json; \
	echo "demo finished in $$(( $$(date +%s) - start )) s; reports under $(DEMO_RUN)/"

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(DEMO_RUN) $(DEMO_DATA)
