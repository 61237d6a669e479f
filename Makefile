# peft.cpp: the two set-up commands are `make test` and `make demo`.
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
MODEL_DIR := $(BUILD)/models/stories260K

.PHONY: all deps configure build test test-wheel test-debian test-other demo fuzz-build fuzz-smoke fuzz install clean bench compare

all: build

# The LibTorch to build against: debian (Debian's libtorch-dev 1.13, OpenBLAS) or wheel (LibTorch
# 2.x from PyPI's torch wheel, CPU libraries only, MKL and SDPA, which scripts/install_deps.sh
# fetches into ~/.cache/peft). By default the faster one on this CPU (docs/benchmarks.md,
# "Training speed"): wheel on Intel x86_64 processors, where MKL's GEMM leads; debian elsewhere
# (OpenBLAS led on an AMD Zen 4). `make test-other` builds and tests the other one.
ifeq ($(origin PEFT_LIBTORCH),undefined)
PEFT_LIBTORCH := $(if $(and $(filter x86_64,$(shell uname -m)),$(shell grep -m1 -o GenuineIntel /proc/cpuinfo 2>/dev/null)),wheel,debian)
endif
export PEFT_LIBTORCH

deps:
	@bash scripts/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DPEFT_BUILD_BENCH=ON \
	  -DPEFT_LIBTORCH=$(PEFT_LIBTORCH) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# libFuzzer targets over the input readers, under ASan + UBSan (torch-free build with clang in
# $(FUZZ_BUILD)): one name per tests/fuzz/fuzz_<name>.cpp, listed in tests/fuzz/CMakeLists.txt
# too; a listed name without its .cpp is skipped. `make fuzz FUZZ_TARGETS="gguf data"` picks some.
FUZZ_TARGETS ?= \
  safetensors \
  gguf \
  model_config \
  adapter_config \
  tokenizer_json \
  yaml_config \
  data \
  llama2c \
  sentencepiece \
  model_path \
  trainer_state
FUZZ_TIME ?= 600
FUZZ_SMOKE_TIME ?= 5
FUZZ_BUILT := $(foreach t,$(FUZZ_TARGETS),$(if $(wildcard tests/fuzz/fuzz_$(t).cpp),$(t)))

fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DPEFT_WITH_TORCH=OFF \
	  -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(FUZZ_BUILD) --target fuzz_all -j $(JOBS)

# Each target for FUZZ_SMOKE_TIME seconds from a fresh copy of its seed corpus (tests/fuzz/corpus_*,
# copied into $(FUZZ_BUILD)/smoke); fails when any target crashes.
fuzz-smoke: fuzz-build
	@scripts/fuzz.sh smoke $(FUZZ_BUILD) $(FUZZ_SMOKE_TIME) $(FUZZ_BUILT)

# Each target for FUZZ_TIME seconds (0: no limit), one after another, or until FUZZ_RUNS inputs
# when given; the grown corpora stay in $(FUZZ_BUILD)/corpus/<name>, crashing inputs go to
# $(FUZZ_BUILD)/artifacts.
FUZZ_RUNS ?=
fuzz: fuzz-build
	@FUZZ_RUNS=$(FUZZ_RUNS) scripts/fuzz.sh long $(FUZZ_BUILD) $(FUZZ_TIME) $(FUZZ_BUILT)

test: build fuzz-smoke
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(MODEL_DIR)/config.json: build
	@$(BUILD)/peft convert models/stories260K/stories260K.bin $(MODEL_DIR) \
	  --tokenizer models/stories260K/tok512.bin

# The main job: LoRA fine-tuning of the bundled stories260K on a slice of E2E, about a minute on
# 2 cores; prints eval loss and BLEU before and after, a sample before and after, and where the
# adapter, logs and plot went.
demo: build $(MODEL_DIR)/config.json
	@$(BUILD)/peft info $(MODEL_DIR)
	@rm -rf $(BUILD)/demo
	@$(BUILD)/peft train examples/configs/e2e_lora.yaml model=$(MODEL_DIR) output_dir=$(BUILD)/demo

# Side-by-side training benchmark of every method against Python PEFT (needs the reference venv,
# tools/reference/README.md); prints tokens/s, step times, peak RSS, MFU and the ratios.
# With the other LibTorch's build present too (make test-other writes build-<other>), both run in
# the same interleaved rounds.
PEFT_PY ?= /root/peft-venv/bin/python
BENCH_ARGS ?=
OTHER_BUILD := $(if $(filter wheel,$(PEFT_LIBTORCH)),build-debian,build-wheel)
OTHER_LIBTORCH := $(if $(filter wheel,$(PEFT_LIBTORCH)),debian,wheel)
, := ,
BENCH_CPP ?= $(PEFT_LIBTORCH)=$(BUILD)/bench/bench_train$(if $(wildcard $(OTHER_BUILD)/bench/bench_train),$(,)$(OTHER_LIBTORCH)=$(OTHER_BUILD)/bench/bench_train)
bench: build $(MODEL_DIR)/config.json
	@$(PEFT_PY) bench/python/bench_train.py --stories $(MODEL_DIR) --cpp $(BENCH_CPP) $(BENCH_ARGS)

# The suite on one LibTorch in build-<name> (wheel: downloaded once); `make test-other` is the
# one `make test` did not build, which CI runs after `make test`.
test-wheel test-debian:
	@$(MAKE) --no-print-directory build BUILD=build-$(@:test-%=%) PEFT_LIBTORCH=$(@:test-%=%)
	@cd build-$(@:test-%=%) && ctest --output-on-failure -j $(JOBS)

test-other: test-$(OTHER_LIBTORCH)

# The seven methods on the bundled E2E task: writes build/compare/compare.md and compare.png.
compare: build $(MODEL_DIR)/config.json
	@$(BUILD)/peft compare examples/configs/compare_e2e.yaml model=$(MODEL_DIR)

install: build
	@cmake --install $(BUILD)

clean:
	@rm -rf $(BUILD) $(FUZZ_BUILD)
