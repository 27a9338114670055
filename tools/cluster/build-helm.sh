#!/usr/bin/env bash
# Builds Helm v4.3.2, which the chart's tests run (lint, template, install, upgrade, uninstall), from
# its Go module into the same cache as the control plane, and prints the binary's path. Already built:
# reused. HELM_BIN (a helm binary of v3.22+ or v4.3+) short-circuits the build. Helm's module builds
# with `go install` from the module proxy as it is (about 2 minutes on 2 cores); the version is set
# the way Helm's Makefile sets it, so `helm version` names it.
set -euo pipefail
version="v4.3.2"
cache="${SANDBOX_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-provisioner}/helm-${version}"
if [ -n "${HELM_BIN:-}" ] && [ -x "$HELM_BIN" ]; then echo "$HELM_BIN"; exit 0; fi
if [ -x "$cache/helm" ]; then echo "$cache/helm"; exit 0; fi
command -v go >/dev/null || { echo "building Helm needs Go (>= 1.25)" >&2; exit 1; }
echo "building helm $version from its Go module (first time only; about 2 minutes on 2 cores)" >&2
mkdir -p "$cache"
work="$(mktemp -d "$cache/build.XXXXXX")"
# Go prints nothing while it builds; say it is alive.
(while sleep 30; do echo "still building helm..." >&2; done) &
ticker=$!
trap 'kill $ticker 2>/dev/null; rm -rf "$work"' EXIT
GOBIN="$work" GOFLAGS=-mod=mod CGO_ENABLED=0 go install \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${version}" "helm.sh/helm/v4/cmd/helm@${version}" >&2
mv "$work/helm" "$cache/helm"
echo "$cache/helm"
