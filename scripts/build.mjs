// `npm run build`: compiles the server and the CLI to dist/ (tsc) and copies what they read at run
// time (the SQL migrations). `node dist/server/main.js` then runs with no TypeScript tooling.
import { execFileSync } from "node:child_process";
import { cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
rmSync(`${root}dist`, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, "-p", `${root}tsconfig.build.json`], { stdio: "inherit" });
cpSync(`${root}server/store/migrations`, `${root}dist/server/store/migrations`, { recursive: true });
console.log("built dist/ (node dist/server/main.js, node cli/cairn.mjs)");
