# Shortcuts over CMake. `make` builds, `make test` runs the suite, `make asan` runs it under
# AddressSanitizer + UBSan, `make demo` streams text from the demo model wick trained
# (models/kjv-demo), `make demo-model` retrains it from scratch, `make demo-lora` fine-tunes it
# with LoRA and serves base and adapter side by side.
BUILD ?= build
# quiet builds: the make that cmake --build runs underneath would otherwise print
# "Entering directory" for every target (it sees it is a sub-make of this one)
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc)

.PHONY: all deps build fetch test asan tsan clean demo demo-model demo-lora install
PREFIX ?= /usr/local

all: build

deps:
	./scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	@echo "built $(BUILD)/wick, $(BUILD)/libwick.a, $(BUILD)/libwick.so (make install PREFIX=... installs them)"

# wick, libwick.{a,so} (soname libwick.so.0), wick.h, wick.pc (pkg-config) and wick.1
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# Third-party tokenizer files some tests use (scripts/fetch-tokenizers.sh, once, checksummed);
# without network those tests skip (or fail when CI=true).
fetch:
	./scripts/fetch-tokenizers.sh || echo "make: scripts/fetch-tokenizers.sh failed; tests needing third_party/tokenizers skip" >&2
	@if command -v npm >/dev/null 2>&1; then \
	  [ -d tests/openai/node_modules/openai ] || npm ci --prefix tests/openai --no-audit --no-fund --loglevel=error || \
	    echo "make: npm ci in tests/openai failed; test_openai_client skips" >&2; \
	else echo "make: npm not found; test_openai_client skips" >&2; fi

test: build fetch
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan: fetch
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DWICK_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

tsan:
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DWICK_TSAN=ON >/dev/null
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure -j $(JOBS)

demo: build
	./scripts/demo.sh $(BUILD)

demo-model: build
	./scripts/demo-model.sh $(BUILD)

demo-lora: build
	./scripts/demo-lora.sh $(BUILD)

clean:
	rm -rf build build-asan build-tsan
