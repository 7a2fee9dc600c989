# gpuwarden Makefile (kubebuilder vocabulary). `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
CONTROLLER_TOOLS_VERSION ?= v0.23.0
STATICCHECK ?= $(LOCALBIN)/staticcheck
STATICCHECK_VERSION ?= v0.8.2
HELM ?= $(LOCALBIN)/helm
HELM_VERSION ?= v3.22.0
KUBE_VERSION ?= v1.37.1
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's own date, so a rebuild of the same commit is the same binary.
BUILD_DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown)
DATA_DIR ?= $(shell pwd)/.data
FAKE_GPUS ?= h100-mig

# go-nvml's cgo wrappers call NVML functions that NVIDIA marks deprecated; the warnings are noise.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

# The API server reports this version to kubectl; the package names it reads are fixed by Kubernetes.
LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X github.com/gpuwarden/gpuwarden/internal/version.Version=$(VERSION) \
	-X github.com/gpuwarden/gpuwarden/internal/version.Commit=$(COMMIT) \
	-X github.com/gpuwarden/gpuwarden/internal/version.Date=$(BUILD_DATE)

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRDs under config/crd/bases and the controller's ClusterRole.
	$(CONTROLLER_GEN) crd paths="./api/..." output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=gpuwarden-controller paths="./controllers/..." paths="./internal/manager/..." output:rbac:artifacts:config=config/rbac
	hack/sync-chart.sh

.PHONY: generate
generate: controller-gen ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: staticcheck ## go vet and staticcheck (pinned, staticcheck.conf); the layering and %w rules are tests in test/arch.
	go vet ./...
	$(STATICCHECK) ./...

.PHONY: docs
docs: ## Generate docs/reference (the API from the CRDs, the CLI from its commands).
	go run ./hack/gendocs docs/reference

.PHONY: verify
verify: manifests generate docs lint ## Fail if generated files or go.mod are stale, code is unformatted, or lint finds something.
	@git diff --exit-code -- config/crd config/rbac charts api docs/reference >/dev/null && test -z "$$(git status --porcelain -- config/crd config/rbac charts api docs/reference)" || { git status --short -- config/crd config/rbac charts api docs/reference; echo "generated files are stale: run 'make manifests generate docs' and commit"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt would change: $$(gofmt -l $$(git ls-files '*.go'))"; exit 1; }

.PHONY: test
test: build ## Run the whole suite: unit, integration (embedded API server, real Docker) and end-to-end.
	hack/test.sh

.PHONY: test-chaos
test-chaos: build ## The chaos suite alone (one server; three nodes with the cluster allocator), 20 fault rounds each (GPUWARDEN_CHAOS_ROUNDS, GPUWARDEN_CHAOS_SEED); make test runs 4.
	GPUWARDEN_CHAOS_ROUNDS=$${GPUWARDEN_CHAOS_ROUNDS:-20} hack/test.sh -chaos

.PHONY: soak
soak: build ## An hour of churn (GPUWARDEN_SOAK), goroutines/heap/RSS/fds sampled each minute, into docs/soak.md; make test runs a minute.
	GPUWARDEN_SOAK=$${GPUWARDEN_SOAK:-1h} GPUWARDEN_SOAK_EVERY=$${GPUWARDEN_SOAK_EVERY:-1m} GPUWARDEN_SOAK_REPORT=$${GPUWARDEN_SOAK_REPORT:-$(CURDIR)/docs/soak.md} hack/test.sh -soak

.PHONY: bench
bench: ## Run every benchmark and write docs/benchmarks.md (QUICK=1: briefly, to check the report).
	BENCH_QUICK=$(QUICK) hack/bench.sh

##@ Build

.PHONY: build
build: ## Build bin/gpuwarden.
	go build -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/gpuwarden ./cmd/gpuwarden

.PHONY: install
install: build ## Install gpuwarden on this server: binary, systemd unit, directories, samples, profile script (hack/install.sh).
	hack/install.sh

.PHONY: uninstall
uninstall: ## Remove what make install installed; the data dir is kept (hack/install.sh --uninstall --purge removes it).
	hack/install.sh --uninstall

.PHONY: run
run: build ## Run gpuwarden server on the embedded control plane (fake GPUs where none exist).
	hack/run.sh

##@ Tools

.PHONY: staticcheck
staticcheck: $(STATICCHECK) ## Install staticcheck into ./bin.
$(STATICCHECK):
	GOBIN=$(LOCALBIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: helm
helm: $(HELM) ## Install helm (for the chart's lint and template tests) into ./bin.
$(HELM):
	GOBIN=$(LOCALBIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into ./bin.
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
