# A thin wrapper over CMake. `make run` and `make test` first install the
# Debian packages they need when any is missing (scripts/deps).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DEPS       := cmake make gcc pkgconf lua5.4 liblua5.4-dev libev-dev libc-ares-dev zlib1g-dev libssl-dev lua-busted
TEST_DEPS  := $(DEPS) clang libclang-rt-14-dev luarocks redis-server redis-tools haproxy procps valgrind libhttp-parser-dev python3-websockets openssl curl python3 wrk lua-cjson libmemcached-tools chromium socat netcat-openbsd

.PHONY: all deps build run test bench clean help

all: build

help:
	@echo "make run    - install what is missing, build, serve examples/echo.lua"
	@echo "make test   - install what is missing, build, run every test suite"
	@echo "make bench  - benchmarks against a plain libev echo server (bench/)"

deps:
	@scripts/deps $(DEPS)

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/lupine examples/echo.lua

test:
	@scripts/deps $(TEST_DEPS)
	@BUILD=$(BUILD) ASAN_BUILD=$(ASAN_BUILD) JOBS=$(JOBS) scripts/test

bench: build
	@bench/run

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
