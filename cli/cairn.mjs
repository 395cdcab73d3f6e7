#!/usr/bin/env node
// The `cairn` executable. It has to work from a fresh clone with no build step, so it
// registers tsx's ESM loader and imports the TypeScript entry point directly. This file
// stays plain JavaScript: it is the one piece Node runs before tsx is in place.
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
// exitCode rather than process.exit(): stdout may be an asynchronous pipe that still has
// output to flush. `cairn serve` returns 0 while the server keeps the process alive.
process.exitCode = await main(process.argv.slice(2));
