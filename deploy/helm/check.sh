#!/usr/bin/env bash
# Checks the chart with what runs without a cluster: yamllint on the values and Chart.yaml,
# `helm lint`, `helm template` for each overlay type, and the rendered manifests validated
# against the Kubernetes schemas (kubernetes-models). HELM is the helm binary (default: helm on
# PATH). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
helm="${HELM:-helm}"
chart=cairn
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

echo "== yamllint"
yamllint -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments-indentation: disable}}' \
  "${chart}/Chart.yaml" "${chart}/values.yaml"

echo "== helm lint"
"${helm}" lint "${chart}" --strict --set database.url=postgres://cairn@db/cairn

echo "== helm template (a render without a database must fail)"
if "${helm}" template t "${chart}" >/dev/null 2>&1; then
  echo "rendered without database.url or database.existingSecret" >&2
  exit 1
fi

echo "== schema validation of the rendered manifests"
npm install --silent --no-audit --no-fund --prefix "${work}" kubernetes-models@5.1.0 yaml@2.9.1 >/dev/null
cp validate.mjs "${work}/"
render() { # name, helm --set arguments...
  local name="$1"; shift
  "${helm}" template "${name}" "${chart}" "$@" >"${work}/${name}.yaml"
  echo "-- ${name}"
  node "${work}/validate.mjs" "${work}/${name}.yaml"
}
render configmap --set database.url=postgres://cairn@db/cairn \
  --set-string 'overlay.configMap.files.hello\.mjs=export const WORKFLOW_NAME = "hello";'
render volume --set database.existingSecret=cairn-db --set overlay.type=volume \
  --set overlay.volume.persistentVolumeClaim.claimName=org-workflows --set metrics.port=9464
render image --set database.existingSecret=cairn-db --set overlay.type=image \
  --set overlay.image.repository=registry.example/org-workflows --set replicaCount=3
render none --set database.existingSecret=cairn-db --set overlay.type=none --set auth.mode=open

echo "== rendered manifests pass yamllint"
yamllint -d '{extends: relaxed, rules: {line-length: disable}}' "${work}"/*.yaml
echo "chart checks passed"
