# The fleet's everyday commands. `make help` lists them.
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the whole fleet on this machine (desk, provider, four services); Ctrl-C stops it
	$(CARGO) run --profile quick -p fleet -- up

.PHONY: build
build: ## Build every binary (release)
	$(CARGO) build --release --workspace

.PHONY: lint
lint: ## rustfmt and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	# Callers' libraries alone: a service that reaches into another's server (not just its
	# client) only builds when the workspace's features are unified, so check without them.
	$(CARGO) check --lib -p api-gateway -p order-api
	# The opt-in TLS build (docs/configuration.md): the code behind `feature = "tls"` compiles clean.
	$(CARGO) clippy -p fleet-telemetry -p order-api --all-targets --features fleet-telemetry/tls,order-api/tls -- -D warnings

.PHONY: test
test: lint validate ## Lint, deploy validation, then every test (needs PostgreSQL on 127.0.0.1:5432)
	$(CARGO) nextest run --workspace --no-fail-fast
	# The TLS build's own client tests (https:// accepted, plain HTTP without roots).
	$(CARGO) nextest run -p fleet-telemetry --features tls

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: bench
bench: ## Measure the fleet (full, ~26 min incl. two cold builds): table on stdout, bench/results/latest.json
	$(CARGO) build --release -p fleet -p fleet-bench
	target/release/fleet-bench --fleet-bin target/release/fleet $(BENCH_FLAGS)

.PHONY: bench-quick
bench-quick: ## A short bench run (~3 min, no cold build): bench/results/quick.json
	$(CARGO) build --release -p fleet -p fleet-bench
	target/release/fleet-bench --quick --fleet-bin target/release/fleet $(BENCH_FLAGS)

# ---------------------------------------------------------------------------------------------
# The real stack: Collector -> Tempo -> Grafana, in Docker compose or on kind (docs/deploy.md).
# SAMPLING picks the sampling lab (docs/sampling.md): all | head | tail | two-tier.
SAMPLING ?= all
VERSION ?= 0.1.0
COMPOSE ?= docker compose
COMPOSE_FILE_ := deploy/compose.yaml
DC = $(COMPOSE) -f $(COMPOSE_FILE_) --env-file deploy/sampling/$(SAMPLING).env $(if $(filter two-tier,$(SAMPLING)),--profile two-tier,)
IMAGES := api-gateway order-api payment-api notification payment-provider trace-desk fleet
THIRD_PARTY_IMAGES := postgres:18.4 otel/opentelemetry-collector-contrib:0.159.0 grafana/tempo:2.10.8 \
	prom/prometheus:v3.13.1 grafana/grafana:13.1.0
KIND ?= kind
KUBECTL ?= kubectl
KIND_CLUSTER ?= tempo-fleet
# kind v0.33.0's image for Kubernetes 1.37, by digest (its release notes); same as k8s/kind/cluster.yaml.
KIND_NODE_IMAGE ?= kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5
KIND_OVERLAY = k8s/overlays/$(if $(filter all,$(SAMPLING)),kind,kind-$(SAMPLING))
KCTX = --context kind-$(KIND_CLUSTER)
# kind nodes run the Docker host's architecture. Images are saved for that one platform: under
# Docker's containerd image store `kind load docker-image` exports a multi-arch index whose other
# platforms were never pulled, and the node's `ctr import --all-platforms` fails with
# "content digest ... not found" (kind issues #3795, #4224). docker < 28 has no `save --platform`:
# kind-up then saves without it, which its classic image store makes single-platform anyway.
KIND_ARCH ?= $(shell docker version --format '{{.Server.Arch}}' 2>/dev/null || echo amd64)
KIND_IMAGE_DIR ?= target/kind-images
KIND_LOAD_IMAGES = $(foreach t,$(filter-out trace-desk,$(IMAGES)),fleet/$(t):$(VERSION)) $(THIRD_PARTY_IMAGES)
DEPLOY_VENV ?= target/deploy-venv
PYTHON ?= $(shell test -x $(DEPLOY_VENV)/bin/python && echo $(DEPLOY_VENV)/bin/python || echo python3)

.PHONY: check-sampling
check-sampling:
	@test -f deploy/sampling/$(SAMPLING).env || { echo "SAMPLING must be all, head, tail or two-tier (got '$(SAMPLING)')" >&2; exit 2; }

.PHONY: images
images: ## Build the fleet's images (one compile; tags fleet/<name>:0.1.0)
	for t in $(IMAGES); do docker build --target $$t -t fleet/$$t:$(VERSION) . || exit 1; done

.PHONY: up
up: check-sampling ## Start the stack in Docker (SAMPLING=all|head|tail|two-tier); returns when Grafana shows a trace
	$(DC) up -d --wait
	deploy/scripts/wait-for-traces.sh http://127.0.0.1:3000 http://127.0.0.1:8080

.PHONY: down
down: ## Stop the Docker stack (every profile); DOWN_FLAGS=-v also deletes its volumes
	$(COMPOSE) -f $(COMPOSE_FILE_) --profile '*' down --remove-orphans $(DOWN_FLAGS)

.PHONY: logs
logs: ## Follow the Docker stack's logs (SERVICE=otel-collector for one)
	$(DC) logs -f --tail=100 $(SERVICE)

.PHONY: load
load: check-sampling ## Run `fleet load` against the Docker stack (profile load; LOAD_RATE=10, LOAD_DURATION=0s)
	$(DC) --profile load up -d load
	@echo "load running: 'make logs SERVICE=load', stop with 'make load-stop'"

.PHONY: load-stop
load-stop: ## Stop the Docker load generator
	$(DC) --profile load stop load

.PHONY: kind-up
kind-up: check-sampling images ## Create the kind cluster, load images, apply k8s/overlays (SAMPLING=...), wait until Grafana shows a trace
	$(KIND) get clusters 2>/dev/null | grep -qx $(KIND_CLUSTER) || \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --config k8s/kind/cluster.yaml --image $(KIND_NODE_IMAGE)
	mkdir -p $(KIND_IMAGE_DIR)
	for i in $(KIND_LOAD_IMAGES); do \
	  docker image inspect $$i >/dev/null 2>&1 || docker pull --platform linux/$(KIND_ARCH) $$i || exit 1; \
	  tar=$(KIND_IMAGE_DIR)/$$(echo $$i | tr '/:' '__').tar; \
	  docker image save --platform linux/$(KIND_ARCH) -o $$tar $$i 2>/dev/null || docker image save -o $$tar $$i || exit 1; \
	  $(KIND) load image-archive $$tar --name $(KIND_CLUSTER) || exit 1; rm -f $$tar; \
	done
	$(KUBECTL) kustomize $(KIND_OVERLAY) | $(KUBECTL) $(KCTX) apply --server-side --force-conflicts -f -
	$(KUBECTL) $(KCTX) -n observability rollout status statefulset/tempo --timeout=300s
	$(KUBECTL) $(KCTX) -n fleet rollout status statefulset/postgres --timeout=300s
	$(KUBECTL) $(KCTX) -n observability wait --for=condition=Available deployment --all --timeout=300s
	$(KUBECTL) $(KCTX) -n fleet wait --for=condition=Available deployment --all --timeout=300s
	deploy/scripts/wait-for-traces.sh http://127.0.0.1:3000 http://127.0.0.1:8080

.PHONY: kind-load
kind-load: ## Re-run the load Job on kind (a Job's pod template is immutable: delete, re-apply)
	$(KUBECTL) $(KCTX) -n fleet delete job load --ignore-not-found
	$(KUBECTL) kustomize $(KIND_OVERLAY) | $(KUBECTL) $(KCTX) apply --server-side --force-conflicts -f -

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: deploy-venv
deploy-venv: $(DEPLOY_VENV)/bin/pytest ## Install the deploy validation tools into $(DEPLOY_VENV) (pinned: tests/deploy/requirements.txt)

$(DEPLOY_VENV)/bin/pytest: tests/deploy/requirements.txt
	python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check -r tests/deploy/requirements.txt
	touch $@

.PHONY: validate
validate: $(DEPLOY_VENV)/bin/pytest ## Offline checks: Dockerfile, compose, every k8s overlay, Collector/Tempo/Grafana configs
	@PATH="$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH" PYTHONDONTWRITEBYTECODE=1 $(DEPLOY_VENV)/bin/python -m pytest -p no:cacheprovider -q tests/deploy; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "validate: pytest collected no tests in tests/deploy" >&2; exit 1; fi; exit $$rc
