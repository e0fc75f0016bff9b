# The two commands of the README (`make run`, `make test`) and a few helpers.
# The real build is CMake; this file only drives it.
BUILD    ?= build
SANBUILD ?= build-sanitize
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all build run test sanitize bench install clean fixtures

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
	$(BUILD)/ember train models/mlp.ember --data fashion-mnist --epochs 1 \
	    --optimizer sgd --lr 0.05 --momentum 0.9 --batch 128 \
	    --save mlp.safetensors --plot mlp.png

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite again under AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize:
	@scripts/deps.sh sanitize
	@cmake -S . -B $(SANBUILD) -DCMAKE_BUILD_TYPE=Debug -DEMBER_SANITIZE=ON -DEMBER_NATIVE=ON >/dev/null
	@cmake --build $(SANBUILD) -j $(JOBS)
	@cd $(SANBUILD) && EMBER_QUICK=1 ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build
	bench/run.sh

# Regenerates tests/fixtures from PyTorch (needs python3-torch).
fixtures:
	/usr/bin/python3 tests/make_fixtures.py tests/fixtures

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX),)

clean:
	rm -rf $(BUILD) $(SANBUILD)
