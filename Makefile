# Quick start: `make demo` (the whole chain on embedded synthetic data) and `make test`.
# Each target creates .venv when missing and installs the project into it (editable).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RS := $(VENV)/bin/roadseg
# torch and torchvision pinned together: the pair that imports on this platform's wheels.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed-stamp
DEMO_DATA ?= data/synthetic
DEMO_RUN ?= runs/demo
DEMO_DRIVE ?= data/synthetic_drive

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[train,dev,trt-ptq]'
	touch $(STAMP)

# The demo starts from a clean $(DEMO_RUN) each time (it holds nothing but demo output).
demo: $(STAMP)
	@start=$$(date +%s); \
	set -e; \
	test -d $(DEMO_DATA)/leftImg8bit || $(VENV)/bin/roadseg synth --out $(DEMO_DATA) --num 160 --num-val 40 --size 256 512 --seed 0; \
	rm -rf $(DEMO_RUN); \
	echo "== train a small U-Net (base width 8) on the synthetic set"; \
	$(RS) train --dataset synthetic --data-path $(DEMO_DATA) --out $(DEMO_RUN)/full \
		--base-width 8 --img-size 128 256 --epochs 10 --batch-size 8 --lr 3e-3 --warmup-iters 20 --eval-every 5; \
	echo "== evaluate the best checkpoint on the synthetic val split"; \
	$(RS) eval --ckpt $(DEMO_RUN)/full/best.pt --dataset synthetic --data-path $(DEMO_DATA) \
		--split val --json $(DEMO_RUN)/full/val_report.json; \
	echo "== prune half the channels (torch-pruning), fine-tune briefly with distillation"; \
	$(RS) prune --ckpt $(DEMO_RUN)/full/best.pt --dataset synthetic --data-path $(DEMO_DATA) \
		--out $(DEMO_RUN)/pruned --ratio 0.5 --final-epochs 3 --distill kl --lr 1e-3 --threads 2; \
	echo "== INT8 quantization-aware training (ModelOpt), one short epoch"; \
	$(RS) qat --ckpt $(DEMO_RUN)/pruned/best.pt --dataset synthetic --data-path $(DEMO_DATA) \
		--out $(DEMO_RUN)/qat --epochs 1 --lr 1e-4 --calib-images 32; \
	echo "== export FP32 and QAT INT8 (Q/DQ) ONNX, each behind the parity gate"; \
	for ckpt in pruned qat; do \
		$(RS) export --ckpt $(DEMO_RUN)/$$ckpt/best.pt --dataset synthetic --data-path $(DEMO_DATA) \
			--out $(DEMO_RUN)/onnx; \
	done; \
	echo "== post-training INT8 for onnxruntime (the baseline QAT must beat), parity gate against FP32"; \
	$(RS) quantize --model $(DEMO_RUN)/onnx/model_fp32.onnx --target onnxruntime \
		--dataset synthetic --data-path $(DEMO_DATA) --threads 2; \
	echo "== TensorRT engine (GPU machines only)"; \
	$(RS) engine --model $(DEMO_RUN)/onnx/model_int8_qat.onnx --precision int8 \
		--out $(DEMO_RUN)/trt || echo "   TensorRT step skipped: see the reason above"; \
	echo "== benchmark: every ONNX file and the LRASPP peer in one run (onnxruntime CPU, model only), ratios to the peer"; \
	$(RS) init --arch lraspp_mobilenet_v3_large --img-size 128 256 --out $(DEMO_RUN)/peer; \
	$(RS) export --ckpt $(DEMO_RUN)/peer/init.pt --dataset synthetic --data-path $(DEMO_DATA) \
		--out $(DEMO_RUN)/peer --parity-images 2; \
	$(RS) bench --model $(DEMO_RUN)/peer/model_fp32.onnx $(DEMO_RUN)/onnx/model_fp32.onnx \
		$(DEMO_RUN)/onnx/model_int8_ort.onnx $(DEMO_RUN)/onnx/model_int8_qat.onnx --sizes 128x256 \
		--dataset synthetic --data-path $(DEMO_DATA) --threads 2 --runs 20 --out $(DEMO_RUN)/bench; \
	echo "== road overlay of a synthetic drive: deploy/run.py (onnxruntime, no torch), IoU against its labels"; \
	test -f $(DEMO_DRIVE)/drive.mp4 || $(VENV)/bin/roadseg synth --drive --out $(DEMO_DRIVE) --num 90 \
		--size 256 512 --seed 1; \
	$(RS) run --model $(DEMO_RUN)/onnx/model_fp32.onnx --source $(DEMO_DRIVE)/drive.mp4 \
		--gt $(DEMO_DRIVE) --output $(DEMO_RUN)/deploy/drive_overlay.mp4 --threads 2; \
	echo "demo finished in $$(( $$(date +%s) - start )) s; reports under $(DEMO_RUN)/"

# Everything (what CI runs), with the 15 slowest tests listed at the end.
test: $(STAMP)
	$(PY) -m pytest -q --durations=15

# Everything but the end-to-end subprocess tests (marked slow): under a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Style, and the layer contracts of pyproject.toml (deploy never imports torch/train/compress/export, ...).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(DEMO_RUN) $(DEMO_DATA) $(DEMO_DRIVE)
