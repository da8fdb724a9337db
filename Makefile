# nudge: the two commands are `make run` and `make test` (see README.md).
BUILD ?= build
JOBS ?= $(shell nproc)
DATA ?= ./data
LISTEN ?= 127.0.0.1:8080

.PHONY: all deps deps-test build run test unit e2e fuzz format-check format bench clean

all: build

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Starts nudge on the embedded default (SQLite under ./data) with the demo workspace.
run: build
	@scripts/run.sh $(BUILD)/nudge $(DATA) $(LISTEN)

test: deps-test build format-check unit e2e fuzz
	@echo "make test: all passed"

unit:
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

e2e:
	@tests/e2e.sh $(BUILD)

fuzz:
	@fuzz/run.sh $(BUILD)-fuzz 20

format-check:
	@scripts/format.sh check

format:
	@scripts/format.sh fix

bench: build
	@scripts/deps.sh bench
	@bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz
