# The two commands of the README: `make run` and `make test`. Both install what is missing
# (scripts/deps), build, and start the local PostgreSQL and Kafka (scripts/services).
BUILD ?= build
# make test runs every suite against an AddressSanitizer + UndefinedBehaviorSanitizer build; the
# plain build (make run's) serves the tests that measure the process (memory, valgrind).
ASAN_BUILD ?= build-asan
JOBS ?= 2
SHELL := /bin/bash

# make install: where (PREFIX, /usr/local by default) and, for staging or packaging, under which
# directory (DESTDIR, empty by default).
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all deps build run test unit services-up services-down soak clean install deb

all: build

deps:
	@scripts/deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPT_SANITIZE=ON \
	    -DPT_PLAIN_BIN=$(abspath $(BUILD))/patterntrack

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

run: build
	eval "$$(scripts/services up)" && exec $(BUILD)/patterntrack run --config etc/patterntrack.lua

# Every suite, through ctest (which prints the final pass/fail line), on the sanitized build: a
# sanitizer report fails the test that triggered it (UBSan aborts; LeakSanitizer fails the
# engine's exit status at shutdown).
test: build $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	eval "$$(scripts/services up)" && cd $(ASAN_BUILD) && \
	    ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure --timeout 900

unit: build
	cd $(BUILD) && ctest -L 'unit|lua' --output-on-failure

# The long fault soak (tests/integration/soak.sh): SOAK_MINUTES (30), SOAK_RATE (3000 events/s),
# SOAK_FAULT_S (60) set its length, load and fault interval. Not part of make test.
soak: build
	eval "$$(scripts/services up)" && PT_BIN=$(BUILD)/patterntrack PT_LOADGEN=$(BUILD)/bench/pt-loadgen \
	    bash tests/integration/soak.sh

# Installs what build/ holds (building it first): PREFIX/bin/patterntrack; lua/, rules/, sql/ and
# web/ in PREFIX/share/patterntrack (the engine finds them from where it is installed); the
# example config PREFIX/etc/patterntrack/patterntrack.lua and the service's environment file
# PREFIX/etc/default/patterntrack (/etc/... when PREFIX is /usr), both kept when they exist; the
# systemd unit in PREFIX/lib/systemd/system (/lib/systemd/system when PREFIX is /usr).
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# The Debian package of build/ (building it first): build/patterntrack_<version>_<arch>.deb, with
# prefix /usr, made by CPack's DEB generator (CMakeLists.txt; control files in deploy/debian/).
deb: build
	cpack -G DEB --config $(BUILD)/CPackConfig.cmake -B $(abspath $(BUILD))
	@ls -1 $(BUILD)/patterntrack_*.deb

services-up:
	@scripts/services up

services-down:
	@scripts/services down

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
