# Everything a fresh machine needs is in scripts/bootstrap.sh; these targets call it first.
PY := .venv/bin/python
QF := .venv/bin/quotaflow
DATA ?= ../shared/data
QUESTION ?= Which magazine was started first, Arthur's Magazine or First for Women?
export QUOTAFLOW_HOME ?= $(CURDIR)/.quotaflow

.PHONY: setup setup-test demo test test-fast lint

setup:
	bash scripts/bootstrap.sh

setup-test:
	bash scripts/bootstrap.sh --test

# (a) The main job on the embedded default: a real react agent on SmolLM2-135M (CPU, in-process)
#     with the offline search tool over the HotpotQA corpus, persisted; the run prints its report
#     (the same as `quotaflow runs show RUN_ID` later).
demo: setup
	@$(QF) db upgrade
	@test -f $(QUOTAFLOW_HOME)/corpus.db || $(QF) corpus build --hotpotqa $(DATA)/hotpotqa/validate.jsonl
	$(QF) run react --task "$(QUESTION)" --budget search=3,browse=2,tokens=12000 --backend local --max-turns 4

# (b) The full test suite: SQLite and a real PostgreSQL server, the real vLLM 0.26 scheduler on CPU,
#     the real local model.
test: setup-test
	$(PY) -m pytest -q -p no:cacheprovider

# The quick loop while editing: no real local model, no vLLM, stop at the first failure.
test-fast:
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not vllm" -x

# ruff's rules and line length, and mypy's packages, are in pyproject.toml.
lint: setup-test
	$(PY) -m ruff check orchestrator budget serving_patch workflows cli bench tests
	$(PY) -m mypy
