# c2c-denoise — `make help` lists the targets. Variables: EXP, ARGS, RESUME, TRAINER, DEVICES, NODES,
# CKPT, CKPTS, DATA, REPORT, CHAINS, AUDIOLDM2, RUN_DIRS, INPUTS, OUT, MIX, LONG_MINUTES, SWEEP, WORKERS, GPUS_PER_NODE, CPUS_PER_TASK, PARTITION, ACCOUNT, TIME, DRY_RUN.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXP    ?= supervised_unet
SWEEP  ?= loss_weights
ARGS   ?=
OUT    ?= restored
MIX    ?= 1.0
RUNS   ?= runs
TB_HOST ?= 127.0.0.1
TB_PORT ?= 6006
LONG_MINUTES ?= 120
REPORT ?= evaluation

TRAIN_FLAGS := $(if $(filter 1 yes true,$(RESUME)),--resume,$(if $(RESUME),--resume-from $(RESUME))) \
               $(if $(TRAINER),--use trainer/$(TRAINER)) \
               $(if $(DEVICES),trainer.devices=$(DEVICES)) $(if $(NODES),trainer.num_nodes=$(NODES))

.DEFAULT_GOAL := help
.PHONY: help setup train submit submit-sweep submit-denoise sweep evaluate chains notebooks denoise tensorboard bench test test-fast lint clean-runs

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  experiments: $$(ls experiments | sed 's/\.yaml//' | tr '\n' ' ')"

setup: $(STAMP) ## create .venv and install the pinned dependencies (idempotent)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,audioldm2,baselines,visqol,dnsmos,postgres]"
	@touch $(STAMP)

train: $(STAMP) ## train EXP (ARGS="key=value ...", RESUME=1, TRAINER=gpu|cpu, DEVICES=, NODES=)
	$(PY) -m lightning_app.train $(EXP) $(ARGS) $(TRAIN_FLAGS)

submit: $(STAMP) ## Slurm job: EXP NODES=1 GPUS_PER_NODE=8 [PARTITION= ACCOUNT= TIME=] [DRY_RUN=1] (configs/cluster/slurm.yaml)
	$(PY) -m lightning_app.submit $(EXP) $(ARGS) $(if $(NODES),--nodes $(NODES)) $(if $(GPUS_PER_NODE),--gpus-per-node $(GPUS_PER_NODE)) \
	  $(if $(PARTITION),--partition $(PARTITION)) $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(TIME),--time $(TIME)) \
	  $(if $(TRAINER),--use trainer/$(TRAINER)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

submit-sweep: $(STAMP) ## SWEEP over EXP as a Slurm job array of WORKERS (4) workers sharing one study [GPUS_PER_NODE=0 for CPU] [ARGS="storage=postgresql://..."]
	$(PY) -m lightning_app.submit $(EXP) --sweep $(SWEEP) --workers $(or $(WORKERS),4) $(ARGS) \
	  $(if $(GPUS_PER_NODE),--gpus-per-node $(GPUS_PER_NODE)) $(if $(CPUS_PER_TASK),--cpus-per-task $(CPUS_PER_TASK)) \
	  $(if $(PARTITION),--partition $(PARTITION)) \
	  $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(TIME),--time $(TIME)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

submit-denoise: $(STAMP) ## restore INPUTS (folders, files, .txt lists) into OUT as a Slurm job array of WORKERS (4) tasks [CKPT=] [DRY_RUN=1]
	$(PY) -m lightning_app.submit --denoise $(INPUTS) --output-dir $(OUT) --workers $(or $(WORKERS),4) $(if $(CKPT),--checkpoint $(CKPT)) \
	  $(if $(GPUS_PER_NODE),--gpus-per-node $(GPUS_PER_NODE)) $(if $(PARTITION),--partition $(PARTITION)) \
	  $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(TIME),--time $(TIME)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) \
	  -- --mix $(MIX) $(ARGS)

sweep: $(STAMP) ## Optuna sweep SWEEP (configs/sweep/) over EXP; the same command continues an interrupted one
	$(PY) -m lightning_app.sweep $(EXP) $(SWEEP) $(ARGS) $(if $(TRAINER),--use trainer/$(TRAINER))

evaluate: $(STAMP) ## checkpoints vs baselines: CKPTS="runs/.../best.ckpt ..." [EXP=archive_fullband: its test set] [DATA=dir with noisy/ clean/] [REPORT=evaluation]
	$(PY) -m lightning_app.evaluate $(CKPTS) $(if $(filter command line,$(origin EXP)),--experiment $(EXP)) \
	  $(if $(DATA),--data $(DATA)) --output-dir $(REPORT) $(ARGS)

chains: $(STAMP) ## reconstruction-chain analysis into REPORT/chains.md [CHAINS="mel:2048:128:128 ..."] [AUDIOLDM2=local model dir]
	$(PY) -m lightning_app.evaluate --chains $(CHAINS) --output-dir $(REPORT) $(if $(DATA),--data $(DATA)) \
	  $(if $(AUDIOLDM2),--audioldm2-dir $(AUDIOLDM2)) $(ARGS)

notebooks: $(STAMP) ## open notebooks/ in JupyterLab (installs the [notebooks] extra once) [RUN_DIRS="runs/a/version_0 runs/b/*"] [ARGS=--allow-root]
	@test -x $(VENV)/bin/jupyter-lab || $(PY) -m pip install --quiet -c constraints.txt -e ".[notebooks]"
	C2C_RUNS="$(RUN_DIRS)" $(VENV)/bin/jupyter-lab notebooks/ $(ARGS)

denoise: $(STAMP) ## restore files: INPUTS="a.wav dir/" [CKPT=... (default: the bundled model)] [OUT=restored] [MIX=1.0]
	$(PY) -m lightning_app.denoise $(INPUTS) $(if $(CKPT),--checkpoint $(CKPT)) --output-dir $(OUT) --mix $(MIX) $(ARGS)

tensorboard: $(STAMP) ## TensorBoard over every run in runs/ (TB_HOST=0.0.0.0 to reach it from elsewhere)
	$(VENV)/bin/tensorboard --logdir $(RUNS) --host $(TB_HOST) --port $(TB_PORT)

bench: $(STAMP) ## data, training step, real-time factor of archive_fullband (or EXP=); restores a LONG_MINUTES (120) 48 kHz stereo file for peak memory
	$(PY) -m lightning_app.bench $(if $(filter command line,$(origin EXP)),--experiment $(EXP)) --long-file-minutes $(LONG_MINUTES) $(ARGS)

test: $(STAMP) ## the test suite (CPU, data made by the tests)
	$(PY) -m pytest

test-fast: $(STAMP) ## the test suite without tests marked slow
	$(PY) -m pytest -m "not slow"

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check lightning_app tests

clean-runs: ## delete runs/ (all checkpoints and logs!)
	rm -rf $(RUNS)
