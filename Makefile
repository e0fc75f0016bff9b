# The two commands of the README (`make run`, `make test`) and a few helpers.
# The real build is CMake; this file only drives it.
BUILD    ?= build
SANBUILD ?= build-sanitize
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all build run test sanitize clang fuzz bench install clean fixtures transfer

all: build

build:
	@scripts/deps.sh build
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The main job: train the default network on Fashion-MNIST, report test accuracy,
# save a checkpoint and a plot.
run:
	@scripts/deps.sh run
	@$(MAKE) --no-print-directory build
	$(BUILD)/ember train models/cnn.ember --data fashion-mnist --epochs 1 \
	    --optimizer adam --lr 1e-3 --batch 64 \
	    --save cnn.safetensors --plot cnn.png

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite again under AddressSanitizer, UndefinedBehaviorSanitizer and the
# leak checker, with the tests' reduced budgets (EMBER_QUICK=1). Optimised with debug
# information: the same floating-point code as the release build, readable reports.
sanitize:
	@scripts/deps.sh sanitize
	@cmake -S . -B $(SANBUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(SANBUILD) -j $(JOBS)
	@cd $(SANBUILD) && EMBER_QUICK=1 ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1:strict_string_checks=1 \
	    UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

# The suite built with clang, warnings as errors: the other compiler of the README's
# promise, and another OpenMP runtime (LLVM's libomp) under the same OpenBLAS.
CLANGBUILD ?= build-clang
clang:
	@scripts/deps.sh clang
	@cmake -S . -B $(CLANGBUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Release -DEMBER_WERROR=ON >/dev/null
	@cmake --build $(CLANGBUILD) -j $(JOBS)
	@cd $(CLANGBUILD) && EMBER_QUICK=1 ctest --output-on-failure -j $(JOBS)

# libFuzzer targets (clang): each runs FUZZ_SECONDS from its seed corpus.
FUZZBUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/deps.sh clang
	@cmake -S . -B $(FUZZBUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBER_FUZZ=ON >/dev/null
	@cmake --build $(FUZZBUILD) -j $(JOBS)
	@scripts/fuzz.sh $(FUZZBUILD) $(FUZZ_SECONDS)

# The transfer-learning experiment of the README: the CNN pre-trained on Fashion-MNIST
# classes 0-4, then classes 5-9 learned from 100 images each with frozen features, with
# fine-tuning, and from scratch (accuracy over 3 seeds).
transfer:
	@$(MAKE) --no-print-directory build
	$(BUILD)/example_transfer

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	bench/run.sh

# Regenerates tests/fixtures from PyTorch (needs python3-torch).
fixtures:
	cd tests/fixtures && for g in gen_*.py; do /usr/bin/python3 $$g || exit 1; done

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX),)

clean:
	rm -rf $(BUILD) $(SANBUILD) $(CLANGBUILD) $(FUZZBUILD)
