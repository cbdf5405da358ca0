# The two commands of the README: `make run` and `make test`. Both install what is missing
# (scripts/deps), build, and start the local PostgreSQL and Kafka (scripts/services).
BUILD ?= build
JOBS ?= 2
SHELL := /bin/bash

.PHONY: all deps build run test unit services-up services-down soak bench clean

all: build

deps:
	@scripts/deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

run: build
	eval "$$(scripts/services up)" && exec $(BUILD)/patterntrack run --config etc/patterntrack.lua

# Every suite, through ctest (which prints the final pass/fail line).
test: build
	eval "$$(scripts/services up)" && cd $(BUILD) && ctest --output-on-failure --timeout 900

unit: build
	cd $(BUILD) && ctest -L 'unit|lua' --output-on-failure

services-up:
	@scripts/services up

services-down:
	@scripts/services down

clean:
	rm -rf $(BUILD)
