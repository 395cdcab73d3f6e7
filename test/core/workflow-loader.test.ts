// WORKFLOW_DIRS loading: what is loaded, what is skipped and why, and which
// mistakes stop start-up.
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "vitest";
import { pino } from "pino";
import { Writable } from "node:stream";
import { loadWorkflows } from "../../server/workflows/loader.js";
import { validateInput } from "../../server/workflows/registry.js";

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines };
}

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "cairn-loader-"));
  for (const [name, text] of Object.entries(files)) {
    if (name.endsWith("/")) mkdirSync(join(dir, name));
    else writeFileSync(join(dir, name), text);
  }
  return dir;
}

test("loads both export styles and logs every skipped file with its reason", async () => {
  const dir = folder({
    "plain.ts": `export const WORKFLOW_NAME = "plain"; export async function handler() { return 1; }`,
    "defined.mjs": `export default { kind: "cairn.workflow", name: "defined", handler: async () => 2 };`,
    "helpers.ts": `export const util = 1;`,
    "no-handler.ts": `export const WORKFLOW_NAME = "lonely";`,
    "no-name.ts": `export async function handler() { return 3; }`,
    "bad-input.ts": `export const WORKFLOW_NAME = "bad_input"; export const Input = { parse() {} }; export function handler() {}`,
    "notes.md": `# notes`,
    "types.d.ts": `export type X = 1;`,
    "plain.test.ts": `throw new Error("never imported")`,
    "_private.ts": `throw new Error("never imported")`,
    "nested/": "",
  });
  const { logger, lines } = capturingLogger();
  const registry = await loadWorkflows([dir], logger);
  assert.deepEqual(registry.list().map((w) => w.name), ["defined", "plain"]);

  const loaded = lines.filter((l) => l.msg === "loaded workflow").map((l) => [l.workflow, String(l.file).replace(`${dir}/`, "")]);
  assert.deepEqual(loaded.sort(), [["defined", "defined.mjs"], ["plain", "plain.ts"]]);
  const skipped = Object.fromEntries(
    lines.filter((l) => l.msg === "skipped file in workflow folder").map((l) => [String(l.file).replace(`${dir}/`, ""), l.reason]),
  );
  assert.ok(lines.filter((l) => l.msg === "skipped file in workflow folder").every((l) => l.level === 30));
  // Files meant to be workflows that are not: warn level, with the reason.
  const nearMisses = Object.fromEntries(
    lines.filter((l) => l.level === 40).map((l) => [String(l.file).replace(`${dir}/`, ""), l.reason]),
  );
  assert.deepEqual(nearMisses, {
    "bad-input.ts": 'Input of workflow "bad_input" is not a Standard Schema validator (zod, valibot, arktype, ...)',
    "no-handler.ts": 'WORKFLOW_NAME is "lonely" but there is no exported handler function',
    "no-name.ts": 'exports a handler but no WORKFLOW_NAME: add `export const WORKFLOW_NAME = "..."` or use defineWorkflow(...)',
  });
  assert.deepEqual(skipped, {
    "_private.ts": "hidden or underscore-prefixed name",
    "helpers.ts": "no WORKFLOW_NAME export and no defineWorkflow(...) export",
    "nested": "a folder (only files directly inside WORKFLOW_DIRS are loaded)",
    "notes.md": "not a .ts, .mts, .js or .mjs file",
    "plain.test.ts": "a test file",
    "types.d.ts": "a type declaration file",
  });
});

test("two workflows with one name stop start-up naming both files", async () => {
  const a = folder({ "one.ts": `export const WORKFLOW_NAME = "twin"; export function handler() {}` });
  const b = folder({ "two.ts": `export const WORKFLOW_NAME = "twin"; export function handler() {}` });
  await assert.rejects(loadWorkflows([a, b], capturingLogger().logger), (error: Error) => {
    assert.match(error.message, /two workflows are named "twin": .*one\.ts and .*two\.ts/);
    return true;
  });
});

test("defineWorkflow({ timeout }) becomes the workflow's default in ms; a bad or zero one stops start-up naming the file", async () => {
  const good = folder({ "timed.mjs": `export default { kind: "cairn.workflow", name: "timed", timeout: "1m30s", handler: async () => 1 };` });
  const registry = await loadWorkflows([good], capturingLogger().logger);
  assert.equal(registry.get("timed").timeoutMs, 90_000);
  for (const [timeout, message] of [['"soon"', /timed-bad\.mjs: the timeout of workflow "bad" is not valid: "soon" is not a duration/], ["0", /timed-bad\.mjs: the timeout of workflow "bad" must be more than zero/]] as const) {
    const bad = folder({ "timed-bad.mjs": `export default { kind: "cairn.workflow", name: "bad", timeout: ${timeout}, handler: async () => 1 };` });
    await assert.rejects(loadWorkflows([bad], capturingLogger().logger), message);
  }
});

test("a file that fails to import stops start-up naming the file", async () => {
  const dir = folder({ "broken.ts": `export const WORKFLOW_NAME = "broken"; throw new Error("top-level failure");` });
  await assert.rejects(loadWorkflows([dir], capturingLogger().logger), /workflow file .*broken\.ts failed to load: Error: top-level failure/);
});

test("a missing package stops start-up with one line naming the package and where to install it", async () => {
  const dir = folder({ "needs-zod.mjs": `import { z } from "cairn-test-no-such-package/sub"; export const WORKFLOW_NAME = "z"; export function handler() {}` });
  await assert.rejects(loadWorkflows([dir], capturingLogger().logger), (error: Error) => {
    assert.equal(
      error.message,
      `workflow file ${dir}/needs-zod.mjs failed to load: it imports the package "cairn-test-no-such-package", which is not installed where the file is. ` +
        `Fix: run \`npm i cairn-test-no-such-package\` in ${dir} (or a folder above it)`,
    );
    return true;
  });
});

test("a missing folder is logged and skipped", async () => {
  const { logger, lines } = capturingLogger();
  const registry = await loadWorkflows(["/nonexistent/cairn-workflows"], logger);
  assert.equal(registry.list().length, 0);
  assert.ok(lines.some((l) => l.msg === "workflow folder not readable; skipped"));
  assert.ok(lines.some((l) => l.msg === "no workflows loaded; check WORKFLOW_DIRS"));
});

test("input is validated with the workflow's Standard Schema and may be transformed", async () => {
  const registry = await loadWorkflows(["workflows"], capturingLogger().logger);
  const ingest = registry.get("document_ingest");
  assert.deepEqual(await validateInput(ingest, { url: "https://example.com" }), { url: "https://example.com", pages: 3 });
  await assert.rejects(validateInput(ingest, { url: "not a url", pages: 0 }), /input\.url: .*; input\.pages: /);
  assert.throws(() => registry.get("nope"), /unknown workflow "nope"; known workflows: document_ingest, expense_approval, nightly_report, order_fulfillment/);
});
