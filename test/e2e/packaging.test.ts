// The packages as a user gets them: the SDK packed with `npm pack` and installed into a folder
// outside the repository (a plain node script starts a run and awaits it, tsc typechecks a typed
// client and a workflow, esbuild bundles the client for a browser, the test kit `@cairnjs/sdk/testing` runs a
// 30-day workflow in memory and typechecks), and the compiled server
// (`npm run build`) loading an overlay folder outside the repository whose workflow imports
// @cairnjs/sdk/workflow with no node_modules of its own.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll as after, beforeAll as before, describe, test } from "vitest";
import { promisify } from "node:util";
import { build } from "esbuild";
import { createTestDatabase, type TestDatabase } from "../support/postgres.js";
import { repoRoot, startServerProcess, stopAllServerProcesses, type ServerProcess } from "../support/server-process.js";

const run = promisify(execFile);
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const tsc = join(repoRoot, "node_modules/typescript/bin/tsc");

/** A folder outside the repository, readable by every user (npm may drop privileges for some steps). */
function outsideFolder(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `cairn-${label}-`));
  chmodSync(dir, 0o755);
  return dir;
}

/** Runs a command; on failure the error carries its output. */
async function sh(file: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    const { stdout } = await run(file, args, { cwd, env, timeout: 180_000, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(" ")} failed in ${cwd}:\n${stdout ?? ""}\n${stderr ?? ""}`, { cause: error });
  }
}

/** The environment without the test runner's and tsx's settings: what a user's shell has. */
function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  delete env.NODE_OPTIONS;
  return env;
}

let database: TestDatabase;
const folders: string[] = [];

before(async () => {
  database = await createTestDatabase("packaging");
  // Both packages' builds: the SDK's (sdk/dist, what npm pack ships) and the server's (dist/).
  await sh(npm, ["run", "build"], repoRoot, userEnv());
});

after(async () => {
  await stopAllServerProcesses();
  await database?.drop();
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
});

describe("the SDK installed from its npm pack tarball", () => {
  let project: string;
  let server: ServerProcess;

  before(async () => {
    const packs = outsideFolder("pack");
    const app = outsideFolder("app");
    folders.push(packs, app);
    await sh(npm, ["pack", "--ignore-scripts", "--pack-destination", packs, "-w", "@cairnjs/sdk"], repoRoot, userEnv());
    const [tarball] = readdirSync(packs).filter((name) => name.endsWith(".tgz"));
    assert.ok(tarball, "npm pack wrote no tarball");
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "an-app", private: true, type: "module" }));
    await sh(npm, ["install", "--no-audit", "--no-fund", "--prefer-offline", join(packs, tarball)], app, userEnv());
    project = app;
    server = await startServerProcess({ databaseUrl: database.url, workflowDirs: "test/fixtures/service-workflows", name: "packaging" });
  });

  test("the tarball holds the compiled entry points and no TypeScript sources", () => {
    const installed = join(project, "node_modules/@cairnjs/sdk");
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as { exports: Record<string, unknown> };
    assert.deepEqual(Object.keys(manifest.exports), [".", "./workflow", "./node", "./testing", "./package.json"]);
    const files = readdirSync(join(installed, "dist"));
    for (const name of ["index.js", "index.d.ts", "workflow.js", "workflow.d.ts", "node-transport.js", "testing.js", "testing.d.ts"]) assert.ok(files.includes(name), `dist/${name} is missing`);
    assert.deepEqual(readdirSync(installed).filter((name) => name.endsWith(".ts")), []);
  });

  test("a plain node script creates a run and awaits its result", async () => {
    writeFileSync(
      join(project, "start-run.mjs"),
      `import { createCairnClient } from "@cairnjs/sdk";
const cairn = createCairnClient({ baseUrl: process.argv[2] });
const run = await cairn.createRun("echo", { value: "from a package" });
console.log(JSON.stringify(await run.waitForResult({ timeoutMs: 30000 })));
`,
    );
    const output = await sh(process.execPath, ["start-run.mjs", server.url], project, userEnv());
    assert.deepEqual(JSON.parse(output), { echoed: "from a package" });
  });

  test("tsc typechecks a typed client and a workflow against the .d.ts files", async () => {
    writeFileSync(
      join(project, "typed.ts"),
      `import { createCairnClient, workflowRef } from "@cairnjs/sdk";
import { defineWorkflow, type WorkflowContext } from "@cairnjs/sdk/workflow";

export const greet = defineWorkflow({
  name: "greet",
  async handler(input: { who: string }, ctx) {
    const line: string = await ctx.step("line", () => \`hello \${input.who}\`);
    await ctx.sleep("pause", "1s");
    return { line };
  },
});

export async function main(ctx: WorkflowContext): Promise<string> {
  const cairn = createCairnClient({ baseUrl: "http://127.0.0.1:8080" });
  const run = await cairn.createRun(workflowRef<{ who: string }, { line: string }>("greet"), { who: "you" });
  const { line } = await run.waitForResult();
  // @ts-expect-error: the typed input has no such field, so a wrong input must not compile.
  await cairn.createRun(workflowRef<{ who: string }, { line: string }>("greet"), { whom: 1 });
  // @ts-expect-error: ctx is typed, and sleep needs a duration.
  await ctx.sleep("pause");
  return line;
}
`,
    );
    writeFileSync(
      join(project, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, lib: ["ES2023", "DOM"], types: [] }, files: ["typed.ts"] }),
    );
    await sh(process.execPath, [tsc, "-p", "tsconfig.json"], project, userEnv());
    // And it does fail on a type error: the check above is not vacuous.
    writeFileSync(join(project, "typed.ts"), `import { defineWorkflow } from "@cairnjs/sdk/workflow";\nexport const n: number = defineWorkflow;\n`);
    await assert.rejects(sh(process.execPath, [tsc, "-p", "tsconfig.json"], project, userEnv()), /TS2322/);
  });

  test("@cairnjs/sdk/testing runs a workflow that sleeps 30 days, then waits for an event, in memory in under a second", async () => {
    // No server and no database: the kit is the engine core over a virtual clock, bundled into the package.
    writeFileSync(
      join(project, "kit.mjs"),
      `import { createTestEnvironment } from "@cairnjs/sdk/testing";
import { defineWorkflow, NonRetryableError } from "@cairnjs/sdk/workflow";

const trial = defineWorkflow({
  name: "trial",
  async handler(input, ctx) {
    await ctx.step("welcome", () => "welcome " + input.user);
    await ctx.sleep("trial-period", "30d");
    const plan = await ctx.waitForEvent("upgrade", "user.upgraded", input.user);
    return { plan, at: ctx.now().toISOString() };
  },
});
// The package's own NonRetryableError (from @cairnjs/sdk/workflow) is the one the kit's core knows: no retries.
let attempts = 0;
const strict = defineWorkflow({
  name: "strict",
  async handler(_input, ctx) {
    return ctx.step("refuse", () => {
      attempts++;
      throw new NonRetryableError("no");
    });
  },
});
const started = performance.now();
const env = createTestEnvironment({ workflows: [trial, strict], startTime: new Date("2026-01-01T00:00:00Z") });
const run = await env.start(trial, { user: "ada" });
await env.advance("30d");
await env.sendEvent({ eventType: "user.upgraded", correlationId: "ada", payload: "pro" });
const output = await env.result(run);
const wallMs = performance.now() - started;
const failed = await env.result(await env.start(strict)).catch((error) => error.failure);
console.log(JSON.stringify({ output, wallMs, kinds: run.journal.map((e) => e.kind), failed: failed.name, attempts }));
`,
    );
    const report = JSON.parse(await sh(process.execPath, ["kit.mjs"], project, userEnv())) as { output: unknown; wallMs: number; kinds: string[]; failed: string; attempts: number };
    assert.deepEqual(report.output, { plan: "pro", at: "2026-01-31T00:00:00.000Z" });
    assert.deepEqual(report.kinds, ["step_completed", "timer_started", "timer_fired", "event_wait_started", "event_received", "now_recorded", "run_completed"]);
    assert.ok(report.wallMs < 1000, `the 30-day run took ${report.wallMs} ms of wall time`);
    assert.deepEqual([report.failed, report.attempts], ["NonRetryableError", 1]);

    // And its declarations typecheck a test against the package's own workflow types.
    writeFileSync(
      join(project, "kit-typed.ts"),
      `import { createTestEnvironment, type ExportedHistory, type ReplayReport, type TestRun } from "@cairnjs/sdk/testing";
import { defineWorkflow } from "@cairnjs/sdk/workflow";

const hello = defineWorkflow({ name: "hello", handler: async (input: { who: string }, ctx) => ctx.step("greet", () => \`hi \${input.who}\`) });
export async function check(history: ExportedHistory): Promise<ReplayReport> {
  const env = createTestEnvironment({ workflows: [hello], alwaysReplay: true });
  const run: TestRun = await env.start(hello, { who: "you" });
  const greeting: string = await env.result<string>(run);
  // @ts-expect-error: advance takes a duration.
  await env.advance(true);
  return greeting ? env.replay(history, hello) : { ok: true, replayed: 0 };
}
`,
    );
    writeFileSync(
      join(project, "tsconfig.kit.json"),
      JSON.stringify({ compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, lib: ["ES2023", "DOM"], types: [] }, files: ["kit-typed.ts"] }),
    );
    await sh(process.execPath, [tsc, "-p", "tsconfig.kit.json"], project, userEnv());
  });

  test("esbuild bundles the client for a browser with no node:* modules", async () => {
    writeFileSync(
      join(project, "browser.ts"),
      `import { createCairnClient } from "@cairnjs/sdk";\nexport const cairn = createCairnClient({ baseUrl: location.origin });\n`,
    );
    await build({ absWorkingDir: project, entryPoints: ["browser.ts"], bundle: true, platform: "browser", format: "esm", outfile: "out/browser.js", logLevel: "warning" });
    const bundle = readFileSync(join(project, "out/browser.js"), "utf8");
    assert.ok(bundle.includes("waitForResult") && bundle.includes("createCairnClient"), "the bundle lacks the client");
    assert.doesNotMatch(bundle, /from ["']node:|require\(["']node:/);
  });
});

describe("the compiled server", () => {
  test("loads an overlay outside the repository whose workflow imports @cairnjs/sdk/workflow, and runs it", async () => {
    const overlay = outsideFolder("overlay");
    folders.push(overlay);
    mkdirSync(join(overlay, "workflows"));
    // TypeScript, a relative import written the TypeScript way (./lib.js for lib.ts), and no node_modules.
    writeFileSync(join(overlay, "workflows/_lib.ts"), `export const shout = (text: string): string => text.toUpperCase();\n`);
    writeFileSync(
      join(overlay, "workflows/overlay.ts"),
      `import { defineWorkflow, NonRetryableError } from "@cairnjs/sdk/workflow";
import { shout } from "./_lib.js";

export const overlay = defineWorkflow({
  name: "overlay_hello",
  async handler(input: { who: string }, ctx) {
    if (!input.who) throw new NonRetryableError("no one to greet");
    return { greeting: await ctx.step("greet", () => shout(\`hello \${input.who}\`)) };
  },
});
`,
    );
    const server = await startServerProcess({
      databaseUrl: database.url,
      workflowDirs: join(overlay, "workflows"),
      entry: ["dist/server/main.js"],
      cwd: overlay,
      name: "compiled",
    });
    const loaded = server.logRecords().find((record) => record.msg === "loaded workflow");
    assert.equal(loaded?.workflow, "overlay_hello");
    const { createCairnClient } = await import("@cairnjs/sdk");
    const cairn = createCairnClient({ baseUrl: server.url });
    const handle = await cairn.createRun("overlay_hello", { who: "overlay" });
    assert.deepEqual(await handle.waitForResult({ timeoutMs: 30_000 }), { greeting: "HELLO OVERLAY" });
  });
});
