// The seams between the server's layers, checked on the source: the core imports nothing but itself, the
// SDK's workflow types and its hashing library; only the runs service, the worker and the store itself
// import the store; the transports (rpc, http, auth) reach runs through server/runs.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "vitest";

const root = resolve(import.meta.dirname, "../..");

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts") && !file.includes("migrations"))
    .map((file) => join(dir, file));
}

/** Every module a file imports: relative ones resolved to repository paths, packages by name. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), "utf8");
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^"';]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1] ?? m[2] ?? "");
  return specs.map((spec) => (spec.startsWith(".") ? relative(root, resolve(root, dirname(file), spec)) : spec));
}

function violations(files: string[], allowed: (target: string) => boolean): string[] {
  return files.flatMap((file) => importsOf(file).filter((target) => !allowed(target)).map((target) => `${file} imports ${target}`));
}

test("the core imports only the core, the SDK's workflow types and @noble/hashes", () => {
  const core = sourceFiles("server/core");
  assert.ok(core.length > 10, "the core's files were found");
  const found = violations(core, (t) => t.startsWith("server/core/") || t === "sdk/workflow.js" || t.startsWith("@noble/hashes/"));
  assert.deepEqual(found, []);
});

test("the test kit imports only itself, the core, the SDK's workflow module and type-only schema types", () => {
  // @cairnjs/sdk/testing bundles server/testing with the core into the SDK package, which ships no server
  // dependency: a store, a logger or a node:* import here would break the kit for workflow authors.
  const kit = sourceFiles("server/testing");
  assert.ok(kit.length >= 3, "the kit's files were found");
  const found = violations(kit, (t) => t.startsWith("server/testing/") || t.startsWith("server/core/") || t === "sdk/workflow.js" || t === "@standard-schema/spec");
  assert.deepEqual(found, []);
  assert.deepEqual(importsOf("sdk/testing.ts"), ["server/testing/environment.js"]);
});

test("only the runs service, the worker and the store import the store", () => {
  const outside = [...sourceFiles("server"), ...sourceFiles("cli")].filter((f) => !/^server\/(runs|worker|store)\//.test(f));
  const found = violations(outside, (t) => !t.startsWith("server/store/"));
  assert.deepEqual(found, []);
});

test("the transports reach runs through the runs service, never the worker", () => {
  const transports = ["server/rpc", "server/http", "server/auth"].flatMap(sourceFiles);
  const found = violations(transports, (t) => !t.startsWith("server/worker/") && !t.startsWith("server/store/"));
  assert.deepEqual(found, []);
});
