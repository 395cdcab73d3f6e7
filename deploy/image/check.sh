#!/usr/bin/env bash
# Builds the image with podman and runs it: the health check, an overlay workflow mounted at
# /app/overlay/org/workflows that imports @cairnjs/sdk/workflow, one run through the API.
#   NODE_IMAGE  the base (default node:20-bookworm-slim); where no registry is reachable, build a
#               stand-in first (deploy/image/standin-base.sh) and pass localhost/cairn-node-standin:20
#   EXTRA_CA    a CA bundle layered onto the base for the build (an egress proxy's CA), optional
#   PORT        the host port the container listens on (host network, 127.0.0.1; default 18080)
#   RUN_MODE    podman (default) runs the container; chroot runs the image's file system as the
#               image's user (uid 1000) with chroot, for sandboxes where runc cannot start
#               containers (here: "error setting rlimit type 7: operation not permitted")
#   PODMAN_RUN_ARGS  more `podman run` flags
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
base="${NODE_IMAGE:-node:20-bookworm-slim}"
port="${PORT:-18080}"
podman=(podman --runtime "${PODMAN_RUNTIME:-runc}")
work="$(mktemp -d)"
name="cairn-check-$$"
trap '"${podman[@]}" rm -f "${name}" >/dev/null 2>&1 || true; rm -rf "${work}"' EXIT

if [ -n "${EXTRA_CA:-}" ]; then
  cp "${EXTRA_CA}" "${work}/extra-ca.crt"
  printf 'FROM %s\nCOPY extra-ca.crt /etc/ssl/certs/extra-ca.crt\nENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/extra-ca.crt\n' "${base}" >"${work}/Containerfile"
  "${podman[@]}" build --format docker -t localhost/cairn-base-with-ca "${work}" >/dev/null
  base=localhost/cairn-base-with-ca
fi

echo "== podman build (base ${base})"
"${podman[@]}" build --format docker --network host --build-arg "NODE_IMAGE=${base}" -t localhost/cairn:check .
"${podman[@]}" image inspect localhost/cairn:check --format 'user={{.Config.User}} cmd={{.Config.Cmd}} healthcheck={{.Config.Healthcheck.Test}}'

mkdir -p "${work}/overlay"
cat >"${work}/overlay/greet.ts" <<'TS'
import { defineWorkflow } from "@cairnjs/sdk/workflow";
export const greet = defineWorkflow({
  name: "overlay_greet",
  handler: async (input: { who: string }, ctx) => ({ greeting: await ctx.step("greet", () => `hello ${input.who}`) }),
});
TS
chmod -R a+rX "${work}"

health() { if [ "${RUN_MODE:-podman}" = chroot ]; then
    chroot --userspec=1000:1000 "${mnt}" /usr/bin/env -i "PORT=${port}" sh -c 'cd /app && node dist/server/healthcheck.js'
  else "${podman[@]}" exec "${name}" node dist/server/healthcheck.js; fi; }
if [ "${RUN_MODE:-podman}" = chroot ]; then
  echo "== chroot run of the image's file system as uid 1000 (embedded store, overlay copied in)"
  "${podman[@]}" create --name "${name}" localhost/cairn:check >/dev/null
  mnt="$("${podman[@]}" mount "${name}")"
  trap '[ -n "${server_pid:-}" ] && kill "${server_pid}" 2>/dev/null; "${podman[@]}" umount "${name}" >/dev/null 2>&1; "${podman[@]}" rm -f "${name}" >/dev/null 2>&1 || true; rm -rf "${work}"' EXIT
  cp "${work}/overlay/greet.ts" "${mnt}/app/overlay/org/workflows/"
  chroot --userspec=1000:1000 "${mnt}" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/node NODE_ENV=production \
    HOST=127.0.0.1 "PORT=${port}" WORKFLOW_DIRS=/app/overlay/org/workflows CAIRN_DATA_DIR=/data \
    sh -c 'cd /app && exec node dist/server/main.js' >"${work}/server.log" 2>&1 &
  server_pid=$!
else
  echo "== podman run (embedded store, overlay mounted read-only)"
  # shellcheck disable=SC2086
  "${podman[@]}" run -d --name "${name}" ${PODMAN_RUN_ARGS:-} --network host -e HOST=127.0.0.1 -e "PORT=${port}" \
    -v "${work}/overlay:/app/overlay/org/workflows:ro" localhost/cairn:check >/dev/null
fi
for _ in $(seq 1 90); do
  health >/dev/null 2>&1 && break
  sleep 1
done
health && echo "health check: SERVING"
curl -sf -X POST -H 'content-type: application/json' \
  -d '{"workflowName":"overlay_greet","input":{"who":"container"}}' \
  "http://127.0.0.1:${port}/cairn.v1.WorkflowService/CreateRun" >"${work}/created.json"
run_id="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).run.runId)' "${work}/created.json")"
curl -sf -X POST -H 'content-type: application/json' -d "{\"runId\":\"${run_id}\",\"timeout\":\"20s\"}" \
  "http://127.0.0.1:${port}/cairn.v1.WorkflowService/AwaitRun" | tee "${work}/result.json"
echo
grep -q '"greeting":"hello container"' "${work}/result.json"
if [ "${RUN_MODE:-podman}" = chroot ]; then tail -n 5 "${work}/server.log"; else "${podman[@]}" logs "${name}" 2>&1 | tail -n 5; fi
echo "image checks passed"
