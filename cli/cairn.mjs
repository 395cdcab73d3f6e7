#!/usr/bin/env node
// The `cairn` executable. Installed from the package, it runs the compiled CLI in dist/ (`npm run
// build` makes it). In a clone of the repository, where cli/main.ts sits next to this file, it runs
// the TypeScript sources through tsx (a dev dependency), so edits apply without a build.
import { existsSync } from "node:fs";

let main;
if (existsSync(new URL("./main.ts", import.meta.url)) && process.env.CAIRN_CLI_COMPILED !== "1") {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("./main.ts"));
} else {
  ({ main } = await import("../dist/cli/main.js"));
}
// exitCode rather than process.exit(): stdout may be an asynchronous pipe that still has
// output to flush. `cairn serve` returns 0 while the server keeps the process alive.
process.exitCode = await main(process.argv.slice(2));
