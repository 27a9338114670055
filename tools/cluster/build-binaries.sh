#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl (k8s.io/kubernetes v1.37.2) and etcd (v3.6.x) from the
# Go module proxy into a cache outside the checkout, keyed by version, and prints that folder.
# Already-built binaries are reused; KUBEBUILDER_ASSETS (envtest convention) short-circuits the build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_version="v1.37.2"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$here/etcd/go.mod")"
cache="${SANDBOX_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-provisioner}/k8s-${k8s_version}-etcd-${etcd_version}"
mkdir -p "$cache"
echo "cache: $cache" >&2

have() { [ -x "$cache/$1" ]; }

build_k8s() {
  local name="$1"
  have "$name" && return 0
  echo "building $name $k8s_version (first time only; tens of minutes on 2 cores)" >&2
  local pkg="k8s.io/component-base/version"
  local ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000"
  (cd "$here/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$cache/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$cache/$name.tmp" "$cache/$name"
}

build_etcd() {
  have etcd && return 0
  echo "building etcd $etcd_version (first time only)" >&2
  (cd "$here/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$cache/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$cache/etcd.tmp" "$cache/etcd"
}

build_etcd
build_k8s kube-apiserver
build_k8s kube-controller-manager
build_k8s kubectl
echo "$cache"
