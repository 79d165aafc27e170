# The fleet's everyday commands. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the whole fleet on this machine (desk, provider, four services); Ctrl-C stops it
	$(CARGO) run --release -p fleet -- up

.PHONY: build
build: ## Build every binary (release)
	$(CARGO) build --release --workspace

.PHONY: lint
lint: ## rustfmt and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: lint ## Lint, then every test (needs PostgreSQL on 127.0.0.1:5432)
	$(CARGO) nextest run --workspace --no-fail-fast

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all
