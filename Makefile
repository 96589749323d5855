# The two README commands. Everything else lives in CMake (see CMakeLists.txt).
#   make run   - install what is missing, build, run the demo
#   make test  - install what is missing, build, run every test
BUILD ?= build

.PHONY: all build deps run test asan bench check-format check-layering clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) >/dev/null
	@cmake --build $(BUILD) -j $$(nproc)

run: deps
	@cmake -S . -B $(BUILD) >/dev/null
	@cmake --build $(BUILD) -j $$(nproc) --target linkup >/dev/null
	@scripts/run.sh

test: deps
	@scripts/test.sh $(BUILD)

asan: deps
	@LK_CC=clang LK_SANITIZE=1 scripts/test.sh build-asan

bench:
	@bench/run.sh

check-format:
	@scripts/check.sh format

check-layering:
	@scripts/check.sh layering

clean:
	rm -rf $(BUILD) build-asan build-fuzz
