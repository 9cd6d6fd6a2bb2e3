# c2c-denoise — `make help` lists the targets and every variable (the lines starting `#:` below).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
#: EXP           experiment name: a file of experiments/ (default supervised_unet)
EXP    ?= supervised_unet
#: ARGS          config overrides and extra options, quoted: ARGS="trainer.max_epochs=3 data.snr_db=[10,25]"
ARGS   ?=
#: RESUME        train: 1 continues the latest run; a run directory or .ckpt continues that one
#: TRAINER       train/submit: a block of configs/trainer/ (cpu, gpu, ddp, multinode)
#: DEVICES       train: trainer.devices (GPUs per node)
#: NODES         train/submit: trainer.num_nodes / Slurm nodes
#: CKPT          denoise/submit-denoise/export: the checkpoint to restore with or export (default: the bundled archive model)
#: INT8          export: 1 quantises the convolutions to int8 (as the bundled model ships)
#: CKPTS         evaluate: checkpoints (or .onnx exports) to score, quoted if several
#: DATA          evaluate/chains: a folder with noisy/ and clean/, or noisy files only (listening report)
#: REPORT        evaluate/chains: output folder (default evaluation)
REPORT ?= evaluation
#: CHAINS        chains: KIND:N_FFT:HOP[:N_MELS] specs to measure
#: AUDIOLDM2     chains: a local AudioLDM2 model folder (nothing downloads)
#: RUN_DIRS      notebooks: run directories or globs the notebooks read
#: INPUTS        denoise/submit-denoise: files, folders, .txt lists; names with spaces in inner quotes: INPUTS="'side a.wav' b/"
#: OUT           denoise/submit-denoise: output folder (default restored, git-ignored)
OUT    ?= restored
#: MIX           denoise: share of the denoised signal, 0..1 (default 1.0)
MIX    ?= 1.0
#: LONG_MINUTES  bench: length of the generated long file restored by the CLI (default 120)
LONG_MINUTES ?= 120
#: SWEEP         sweep/submit-sweep: a file of configs/sweep/ (default loss_weights)
SWEEP  ?= loss_weights
#: WORKERS       submit-sweep/submit-denoise: Slurm array tasks (default 4)
#: GPUS_PER_NODE submit*: GPUs per node or task (0 for CPU-only)
#: CPUS_PER_TASK submit-sweep/submit-denoise: CPU cores per array task
#: PARTITION     submit*: Slurm partition
#: ACCOUNT       submit*: Slurm account
#: TIME          submit*: Slurm time limit, e.g. 12:00:00
#: DRY_RUN       submit*: 1 prints the job script(s) and submits nothing
#: RUNS          tensorboard: the folder of runs (default runs)
RUNS   ?= runs
#: TB_HOST       tensorboard: address to listen on (default 127.0.0.1; 0.0.0.0 to reach it from elsewhere)
TB_HOST ?= 127.0.0.1
#: TB_PORT       tensorboard: port (default 6006)
TB_PORT ?= 6006
#: PYTHON        setup: the Python 3.11 that makes .venv (default python3.11, else python3)
#: PY            every target: the environment's Python (default .venv/bin/python; tests point it at another)

# `make train EXP=x trainer.max_epochs=3` would pass the override to Make, which takes it as a variable and
# drops it: every command-line variable must be one of those above.
KNOWN_VARIABLES := $(shell sed -n 's/^\#: \([A-Z_0-9]*\) .*/\1/p' $(firstword $(MAKEFILE_LIST)))
STRAY := $(filter-out $(KNOWN_VARIABLES),$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
STRAY1 := $(firstword $(STRAY))
ifneq ($(STRAY1),)
ifeq ($(STRAY1),$(shell echo '$(STRAY1)' | tr -d '.+a-z'))
$(error $(STRAY1) is not a variable of this Makefile; they are: $(KNOWN_VARIABLES) (make help says what each does))
else
$(error $(STRAY1) looks like a config override: put overrides in ARGS, e.g. make $(or $(MAKECMDGOALS),train) ARGS="$(patsubst +%,%,$(STRAY1))=$($(STRAY1))")
endif
endif

TRAIN_FLAGS := $(if $(filter 1 yes true,$(RESUME)),--resume,$(if $(RESUME),--resume-from $(RESUME))) \
               $(if $(TRAINER),--use trainer/$(TRAINER)) \
               $(if $(DEVICES),trainer.devices=$(DEVICES)) $(if $(NODES),trainer.num_nodes=$(NODES))

.DEFAULT_GOAL := help
.PHONY: help setup train tensorboard denoise corpus evaluate chains bench notebooks notebooks-run submit sweep submit-sweep submit-denoise export test test-fast lint docs docs-serve docs-figures clean-runs

help: ## list the targets (the first run first) and the variables
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n%s\n", substr($$0, 5)} /^[a-z-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "variables (make TARGET VAR=value; config overrides go in ARGS=\"key=value ...\"):"
	@sed -n 's/^#: /  /p' $(MAKEFILE_LIST)
	@echo "experiments: $$(ls experiments | sed 's/\.yaml//' | tr '\n' ' ')"
	@echo "documentation: docs/ (Markdown), or make docs and open site/index.html"

##@ First run, in this order

setup: $(STAMP) ## create .venv and install the pinned dependencies (idempotent)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[train,dev,docs,audioldm2,baselines,visqol,dnsmos,postgres]"
	@touch $(STAMP)

train: $(STAMP) ## train EXP (ARGS="key=value ...", RESUME=1, TRAINER=gpu|cpu, DEVICES=, NODES=)
	$(PY) -m lightning_app.train $(EXP) $(ARGS) $(TRAIN_FLAGS)

tensorboard: $(STAMP) ## TensorBoard over every run in runs/ (TB_HOST=0.0.0.0 to reach it from elsewhere)
	$(VENV)/bin/tensorboard --logdir $(RUNS) --host $(TB_HOST) --port $(TB_PORT)

denoise: $(STAMP) ## restore files: INPUTS="a.wav dir/" [CKPT=... (default: the bundled model)] [OUT=restored] [MIX=1.0]
	$(if $(strip $(INPUTS)),,$(error make denoise needs INPUTS: files, folders or .txt lists, e.g. INPUTS="old_78rpm.wav transfers/"))
	$(PY) -m lightning_app.denoise $(INPUTS) $(if $(CKPT),--checkpoint $(CKPT)) --output-dir $(OUT) --mix $(MIX) $(ARGS)

##@ Train, compare and analyse

corpus: $(STAMP) ## real recordings (free music and voices from Debian packages) into data/real/ with manifest.csv and a train/val/test split by source
	$(PY) -m lightning_app.corpus $(ARGS)

evaluate: $(STAMP) ## checkpoints vs baselines: CKPTS="runs/.../best.ckpt ..." [EXP=archive_fullband: its test set] [DATA=dir with noisy/ clean/] [REPORT=evaluation]
	$(PY) -m lightning_app.evaluate $(CKPTS) $(if $(filter command line,$(origin EXP)),--experiment $(EXP)) \
	  $(if $(DATA),--data $(DATA)) --output-dir $(REPORT) $(ARGS)

chains: $(STAMP) ## reconstruction-chain analysis into REPORT/chains.md [CHAINS="mel:2048:128:128 ..."] [AUDIOLDM2=local model dir]
	$(PY) -m lightning_app.evaluate --chains $(CHAINS) --output-dir $(REPORT) $(if $(DATA),--data $(DATA)) \
	  $(if $(AUDIOLDM2),--audioldm2-dir $(AUDIOLDM2)) $(ARGS)

bench: $(STAMP) ## data, training step, real-time factor of archive_fullband (or EXP=); restores a LONG_MINUTES (120) 48 kHz stereo file for peak memory
	$(PY) -m lightning_app.bench $(if $(filter command line,$(origin EXP)),--experiment $(EXP)) --long-file-minutes $(LONG_MINUTES) $(ARGS)

notebooks: $(STAMP) ## open notebooks/ in JupyterLab (installs the [notebooks] extra once) [RUN_DIRS="runs/a/version_0 runs/b/*"] [ARGS=--allow-root]
	@test -x $(VENV)/bin/jupyter-lab || $(PY) -m pip install --quiet -c constraints.txt -e ".[notebooks]"
	C2C_RUNS="$(RUN_DIRS)" $(VENV)/bin/jupyter-lab notebooks/ $(ARGS)

notebooks-run: $(STAMP) ## run every notebook on its own tiny runs and store the outputs (figures) in it
	$(PY) scripts/run_notebooks.py $(if $(RUN_DIRS),--runs "$(RUN_DIRS)")

##@ Clusters and sweeps

submit: $(STAMP) ## Slurm job: EXP NODES=1 GPUS_PER_NODE=8 [PARTITION= ACCOUNT= TIME=] [DRY_RUN=1] (configs/cluster/slurm.yaml)
	$(PY) -m lightning_app.submit $(EXP) $(ARGS) $(if $(NODES),--nodes $(NODES)) $(if $(GPUS_PER_NODE),--gpus-per-node $(GPUS_PER_NODE)) \
	  $(if $(PARTITION),--partition $(PARTITION)) $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(TIME),--time $(TIME)) \
	  $(if $(TRAINER),--use trainer/$(TRAINER)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

sweep: $(STAMP) ## Optuna sweep SWEEP (configs/sweep/) over EXP; the same command continues an interrupted one
	$(PY) -m lightning_app.sweep $(EXP) $(SWEEP) $(ARGS) $(if $(TRAINER),--use trainer/$(TRAINER))

submit-sweep: $(STAMP) ## SWEEP over EXP as a Slurm job array of WORKERS (4) workers sharing one study [GPUS_PER_NODE=0 for CPU] [ARGS="storage=postgresql://..."]
	$(PY) -m lightning_app.submit $(EXP) --sweep $(SWEEP) --workers $(or $(WORKERS),4) $(ARGS) \
	  $(if $(GPUS_PER_NODE),--gpus-per-node $(GPUS_PER_NODE)) $(if $(CPUS_PER_TASK),--cpus-per-task $(CPUS_PER_TASK)) \
	  $(if $(PARTITION),--partition $(PARTITION)) \
	  $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(TIME),--time $(TIME)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run)

submit-denoise: $(STAMP) ## restore INPUTS (folders, files, .txt lists) into OUT as a Slurm job array of WORKERS (4) tasks [CKPT=] [DRY_RUN=1]
	$(if $(strip $(INPUTS)),,$(error make submit-denoise needs INPUTS: files, folders or .txt lists, e.g. INPUTS=/archive/transfers))
	$(PY) -m lightning_app.submit --denoise $(INPUTS) --output-dir $(OUT) --workers $(or $(WORKERS),4) $(if $(CKPT),--checkpoint $(CKPT)) \
	  $(if $(GPUS_PER_NODE),--gpus-per-node $(GPUS_PER_NODE)) $(if $(CPUS_PER_TASK),--cpus-per-task $(CPUS_PER_TASK)) \
	  $(if $(PARTITION),--partition $(PARTITION)) \
	  $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(TIME),--time $(TIME)) $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) \
	  -- --mix $(MIX) $(ARGS)

##@ Restoring

export: $(STAMP) ## export CKPT (default: the bundled model) for the ONNX engine: NAME.onnx beside it, or into OUT=
	$(PY) -m lightning_app.export $(CKPT) $(if $(filter command line,$(origin OUT)),-o $(OUT)) $(if $(filter 1,$(INT8)),--int8)

##@ Develop

test: $(STAMP) ## the test suite (CPU, data made by the tests)
	$(PY) -m pytest

test-fast: $(STAMP) ## the test suite without tests marked slow
	$(PY) -m pytest -m "not slow"

lint: $(STAMP) ## ruff: lint and format check (line length 110)
	$(VENV)/bin/ruff check lightning_app tests scripts setup.py
	$(VENV)/bin/ruff format --check lightning_app tests scripts setup.py

docs: $(STAMP) ## build the documentation site into site/ (strict: a broken link or missing page fails)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: $(STAMP) ## the documentation site, live at http://127.0.0.1:8000 while you edit docs/
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

docs-figures: $(STAMP) ## remake docs/images (the restored excerpts; the gains chart from REPORT="evaluate folders", the last winning)
	$(PY) scripts/docs_figures.py $(if $(filter command line,$(origin REPORT)),--evaluation $(REPORT))

clean-runs: ## delete runs/ (all checkpoints and logs!)
	rm -rf $(RUNS)
