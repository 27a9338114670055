#!/usr/bin/env bash
# Builds Traefik v3.7.13, the Gateway API implementation that gateway-mode tests and benchmarks route
# through, from its Go module into the same cache as the control plane, and prints the binary's path.
# Already built: reused. TRAEFIK_BIN (a traefik binary of this version) short-circuits the build.
#
# Why not `go install github.com/traefik/traefik/v3/cmd/traefik@v3.7.13`: the module's go.mod has
# replace directives, which `go install pkg@version` refuses. So it is built inside a writable copy of
# the module, where three things stop a build from the module proxy reachable here, each met with the
# smallest change that leaves Gateway API routing untouched:
#  1. `replace github.com/traefik/traefik/dynamic/ext => ./pkg/config/dynamic/ext` names a nested module
#     the module zip does not contain (zips leave nested modules out). A stub module there gives
#     pkg/config/dynamic the two empty types it embeds (ext.HTTP, ext.Router): extension points of
#     Traefik's own distribution, empty in the open-source build.
#  2. The module proxy refuses ("not available") 14 modules of DNS providers that
#     github.com/go-acme/lego/v5/providers/dns imports (alidns, tencent, huaweicloud, ...). Traefik
#     needs that package only for ACME DNS-01 challenges, which routing Gateway API traffic never
#     uses. lego v5.4.1 is copied and its provider table (zz_gen_dns_providers.go) replaced by a
#     function that answers "not available in this build"; the copy replaces the module.
#  3. The 15th refused module is the replace target github.com/containous/go-http-auth (a fork). The
#     upstream github.com/abbot/go-http-auth v0.4.0 stands in; it lacks CheckSecret (used by the basic
#     auth middleware) and RequireAuthStale (digest auth). In this build the basic auth middleware
#     refuses every password (closed, never open) and a stale digest nonce is answered as a failed
#     one; neither middleware is used by Gateway API routing.
set -euo pipefail
version="v3.7.13"
lego_version="v5.4.1"
auth_version="v0.4.0"
cache="${SANDBOX_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-provisioner}/traefik-${version}"
if [ -n "${TRAEFIK_BIN:-}" ] && [ -x "$TRAEFIK_BIN" ]; then echo "$TRAEFIK_BIN"; exit 0; fi
if [ -x "$cache/traefik" ]; then echo "$cache/traefik"; exit 0; fi
command -v go >/dev/null || { echo "building Traefik needs Go (>= 1.26)" >&2; exit 1; }
echo "building traefik $version from its Go module (first time only; about 5 minutes on 2 cores)" >&2
mkdir -p "$cache"
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

module_dir() { (cd "$work" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'); }

# A writable copy of the module.
cp -r "$(module_dir "github.com/traefik/traefik/v3@$version")" "$work/traefik"
chmod -R u+w "$work/traefik"
cd "$work/traefik"

# 1. The nested module, as a stub.
mkdir -p pkg/config/dynamic/ext
printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.26\n' >pkg/config/dynamic/ext/go.mod
cat >pkg/config/dynamic/ext/ext.go <<'EOF'
// Package ext: the extension points of Traefik's dynamic configuration, empty in this build.
package ext

// HTTP extends the HTTP configuration (nothing here).
type HTTP struct{}

// Router extends a router (nothing here).
type Router struct{}
EOF

# 2. lego without its DNS providers.
cp -r "$(module_dir "github.com/go-acme/lego/v5@$lego_version")" "$work/lego"
chmod -R u+w "$work/lego"
rm -f "$work/lego/providers/dns/dns_providers_test.go"
cat >"$work/lego/providers/dns/zz_gen_dns_providers.go" <<'EOF'
// Package dns: ACME DNS-01 providers, left out of this build (their modules cannot be had here, and
// Gateway API routing never solves ACME challenges).
package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName answers that no DNS provider is available in this build.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("DNS provider %q is not available in this build of traefik (built for Gateway API routing)", name)
}
EOF
go mod edit -replace "github.com/go-acme/lego/v5=$work/lego"

# 3. The upstream go-http-auth instead of the fork.
go mod edit -dropreplace github.com/abbot/go-http-auth -replace "github.com/abbot/go-http-auth=github.com/abbot/go-http-auth@$auth_version"
sed -i 's/checkSecret:       goauth\.CheckSecret,/checkSecret:       func(string, string) bool { return false }, \/\/ not in go-http-auth v0.4.0: refuse/' pkg/middlewares/auth/basic_auth.go
sed -i 's/d\.auth\.RequireAuthStale(rw, req)/d.auth.RequireAuth(rw, req) \/\/ RequireAuthStale is not in go-http-auth v0.4.0/' pkg/middlewares/auth/digest_auth.go
grep -q 'return false }, // not in go-http-auth' pkg/middlewares/auth/basic_auth.go
grep -q 'RequireAuthStale is not in go-http-auth' pkg/middlewares/auth/digest_auth.go

# Go prints nothing while it builds; say it is alive.
(while sleep 30; do echo "still building traefik..." >&2; done) &
ticker=$!
trap 'kill $ticker 2>/dev/null; rm -rf "$work"' EXIT
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" -o "$cache/traefik.tmp" ./cmd/traefik
mv "$cache/traefik.tmp" "$cache/traefik"
echo "$cache/traefik"
