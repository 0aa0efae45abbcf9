# One build (the dev profile) serves the binaries and every test. CARGO_TARGET_DIR may point
# outside the clone (CI does) so the RocksDB build is reused.
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

.PHONY: build run test lint fmt clean bench-compare

build:
	$(CARGO) build --workspace --bins

# A local member on 127.0.0.1:2379 with data in ./default.oxetcd
run: build
	$(TARGET_DIR)/debug/oxetcd

# Unit tests and end-to-end tests (the e2e tests start the built binaries, so build them first).
test: build
	OXETCD_BIN_DIR=$(abspath $(TARGET_DIR))/debug $(CARGO) nextest run --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# Real etcd 3.4 and oxetcd side by side, 1 and 3 members (release build; see docs/benchmarks.md).
bench-compare:
	$(CARGO) build --release --bins
	bash bench/compare.sh $(TARGET_DIR) 1
	bash bench/compare.sh $(TARGET_DIR) 3
