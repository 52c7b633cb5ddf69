# `make demo` and `make test` work on a fresh machine: the first use creates .venv and installs.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU install: requirements.txt and the file it includes (a change to either reinstalls).
REQS := requirements.txt requirements-common.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQS) | cksum | cut -d' ' -f1)
DEMO_DIR ?= demo_output

.PHONY: install test test-fast docs demo clean

$(STAMP): $(REQS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# `make test`: lint, then every test (CI); `make test-fast`: lint, then all but the `slow`-marked ones.
# Two pytest-xdist workers (CI has two cores), each given whole files, so a file's fixtures are built once;
# tests/conftest.py hands out the files with `slow` tests first, so the two workers end together.
XDIST := -n 2 --dist loadfile
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(XDIST) --durations=15 tests  # the slowest tests, to keep the suite under 5 minutes

test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(XDIST) -m "not slow" --durations=10 tests

# docs/USAGE.md's key reference, generated from the config schema (a test fails while they differ).
docs: $(STAMP)
	$(PY) -m pfd.cli.docs docs/USAGE.md

# The whole job on the embedded synthetic dataset (CPU, a few minutes): data (once), poses (ground
# truth), training, evaluation (metrics.json, cmc.png, ranked_lists.png), a FAISS index and one lookup.
# A rerun deletes nothing: `train.py --resume` finishes (or, finished, keeps) the run in $(DEMO_DIR)/run and
# refuses another config's run there; the index is added to (`--append`: nothing new for the same model;
# another model's index is refused). To train anew, delete $(DEMO_DIR)/run and $(DEMO_DIR)/index yourself.
DEMO_CFG := configs/demo_synthetic.yaml
# 200 training ids x 8 images (two K=4 chunks each per epoch), each seen by all 6 cameras; 50 test ids
# (3 cameras each), 40 distractors.
DEMO_DATA := --ids-train 200 --images-per-id 8 --train-cameras-per-id 6 --gallery-per-camera 5
DEMO_OPTS = DATASETS.ROOT_DIR $(DEMO_DIR)/data OUTPUT_DIR $(DEMO_DIR)/run MODEL.POSE_CACHE_DIR $(DEMO_DIR)/pose_cache

demo: $(STAMP)
	test -f $(DEMO_DIR)/data/synthetic/keypoints.json || $(PY) -m pfd.data.synthetic --out $(DEMO_DIR)/data/synthetic --quiet $(DEMO_DATA)
	$(PY) -m pfd.pose --config $(DEMO_CFG) $(DEMO_OPTS)
	$(PY) train.py --resume --config $(DEMO_CFG) $(DEMO_OPTS)
	$(PY) test.py --config $(DEMO_CFG) DATASETS.ROOT_DIR $(DEMO_DIR)/data MODEL.POSE_CACHE_DIR $(DEMO_DIR)/pose_cache OUTPUT_DIR $(DEMO_DIR)/eval TEST.WEIGHT $(DEMO_DIR)/run/last.pth
	$(PY) query.py index --config $(DEMO_CFG) --weights $(DEMO_DIR)/run/last.pth \
		--gallery $(DEMO_DIR)/data/synthetic/bounding_box_test --out $(DEMO_DIR)/index \
		$$(test -f $(DEMO_DIR)/index/manifest.json && echo --append) $(DEMO_OPTS)
	$(PY) query.py search --index $(DEMO_DIR)/index --image "$$(ls $(DEMO_DIR)/data/synthetic/query/*.jpg | head -n 1)" --topk 10 --out $(DEMO_DIR)/search.png
	@echo "Look people up in a browser: $(PY) -m pfd.serve --index $(DEMO_DIR)/index  (then open http://127.0.0.1:8000/)"

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
