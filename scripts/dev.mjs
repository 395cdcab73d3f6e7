// `npm run dev`: `npm start` that restarts the server when a workflow file (WORKFLOW_DIRS, default
// ./workflows) or the server's own sources change. Workflows are loaded once at start-up, and a
// restart is cheap: runs resume from their journals. Ctrl-C stops both.
import { spawn } from "node:child_process";
import { existsSync, watch } from "node:fs";
import { delimiter, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const workflowDirs = (process.env.WORKFLOW_DIRS ?? "./workflows").split(delimiter).filter(Boolean).map((dir) => resolve(dir));
const watched = [...workflowDirs, resolve(root, "server"), resolve(root, "sdk")].filter((dir) => existsSync(dir));

let child;
let restarting = false;
let timer;

function start() {
  child = spawn(process.execPath, ["--conditions=@cairnjs/source", "--import", import.meta.resolve("tsx"), resolve(root, "server/main.ts")], { stdio: "inherit" });
  child.on("exit", (code, signal) => {
    child = undefined;
    if (restarting) {
      restarting = false;
      start();
    } else if (!stopping) {
      console.error(`[dev] server exited (${signal ?? code}); waiting for a file change to start it again`);
    }
  });
}

function restart(reason) {
  console.error(`[dev] ${reason} changed: restarting the server`);
  if (!child) return start();
  restarting = true;
  const old = child;
  old.kill("SIGTERM");
  // A second SIGTERM skips the shutdown grace period (server/main.ts).
  const hurry = setTimeout(() => old.kill("SIGTERM"), 2000);
  old.once("exit", () => clearTimeout(hurry));
}

for (const dir of watched) {
  watch(dir, { recursive: true }, (_event, name) => {
    if (!name || /(^|\/)(\.|node_modules)/.test(name)) return;
    clearTimeout(timer);
    timer = setTimeout(() => restart(resolve(dir, name)), 200);
  });
}
console.error(`[dev] watching ${watched.join(", ")}`);

let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    stopping = true;
    restarting = false;
    if (!child) process.exit(0);
    child.kill(signal);
    child.once("exit", () => process.exit(0));
  });
}
start();
