// End to end in a real browser: headless Chromium loads a page (test/browser/) that uses the SDK
// over Connect-Web to create a run and render its streamed updates until it completes. The page is
// served from its own origin, so every call to Cairn is a cross-origin request that CORS
// (CAIRN_CORS_ORIGINS) must let through.
//
// Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it),
// or another Chromium named by CHROMIUM_PATH. Installs nothing itself.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, test } from "vitest";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { type Browser, chromium, type Request } from "playwright-core";
import type { CairnServer } from "../../server/app.js";
import { startTestServer } from "../support/in-process-server.js";
import { createTestDatabase } from "../support/postgres.js";

const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
// As root, on a machine with a closed network: no sandbox, no GPU, and none of Chromium's own
// background connections (updates, sync, safe browsing...).
const chromiumFlags = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let cairn: CairnServer | undefined;
let pages: Server | undefined;
let browser: Browser | undefined;
let dropDatabase: (() => Promise<void>) | undefined;
let pageOrigin = "";

/** The page script and everything it imports (the SDK, Connect-Web, protobuf) as one ES module. */
async function bundlePage(): Promise<string> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL("../browser/app.ts", import.meta.url))],
    bundle: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    write: false,
    sourcemap: "inline",
    logLevel: "silent",
  });
  const [output] = result.outputFiles;
  if (!output) throw new Error("esbuild produced no output for test/browser/app.ts");
  return output.text;
}

/** A static server on its own port (hence its own origin) for the page and its script. */
async function servePage(html: string, script: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://page").pathname;
    const file =
      path === "/" || path === "/index.html"
        ? { type: "text/html; charset=utf-8", body: html }
        : path === "/app.js"
          ? { type: "text/javascript; charset=utf-8", body: script }
          : undefined;
    if (!file) {
      res.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${path}`);
      return;
    }
    res.writeHead(200, { "content-type": file.type, "cache-control": "no-store" }).end(file.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return server;
}

beforeAll(async () => {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Chromium is not installed at ${chromiumPath}: install Debian's package with ` +
        "`apt-get install -y chromium` (.ci/run does this), or set CHROMIUM_PATH to another Chromium",
    );
  }
  const [html, script] = await Promise.all([readFile(new URL("../browser/index.html", import.meta.url), "utf8"), bundlePage()]);
  pages = await servePage(html, script);
  pageOrigin = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;

  const database = await createTestDatabase("browser");
  dropDatabase = database.drop;
  ({ server: cairn } = await startTestServer({
    DATABASE_URL: database.url,
    WORKFLOW_DIRS: "test/fixtures/watch-workflows",
    CAIRN_CORS_ORIGINS: pageOrigin,
  }));

  browser = await chromium.launch({ executablePath: chromiumPath, args: chromiumFlags, timeout: 20_000 });
});

afterAll(async () => {
  await browser?.close();
  if (pages) {
    pages.closeAllConnections();
    await new Promise<void>((resolve) => pages?.close(() => resolve()));
  }
  await cairn?.close();
  await dropDatabase?.();
});

test("a page in headless Chromium creates a run over Connect-Web and renders its streamed updates until it completes", async () => {
  assert.ok(browser && cairn);
  const cairnOrigin = new URL(cairn.url).origin;
  assert.notEqual(cairnOrigin, pageOrigin, "the page and Cairn must be on different origins");

  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const consoleErrors: string[] = [];
    const log: string[] = [];
    page.on("console", (message) => {
      log.push(`[${message.type()}] ${message.text()}`);
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    page.on("pageerror", (error) => consoleErrors.push(`uncaught: ${error.message}`));
    page.on("requestfailed", (request) => log.push(`[request failed] ${request.method()} ${request.url()}: ${request.failure()?.errorText}`));
    const cairnRequests: Request[] = [];
    page.on("request", (request) => {
      if (new URL(request.url()).origin === cairnOrigin) cairnRequests.push(request);
    });

    await page.goto(`${pageOrigin}/#${encodeURIComponent(cairn.url)}`);
    const status = page.locator("#status");
    try {
      // A string, not a function: this file is type-checked without the DOM lib.
      await page.waitForFunction(`["completed", "failed", "cancelled", "error"].includes(document.getElementById("status")?.textContent)`, undefined, {
        timeout: 15_000,
      });
    } catch (error) {
      throw new Error(`the page did not finish: #status is ${JSON.stringify(await status.textContent())}\n${log.join("\n")}`, { cause: error });
    }
    const pageError = await page.locator("#error").textContent();
    assert.equal(await status.textContent(), "completed", `#error: ${JSON.stringify(pageError)}\npage log:\n${log.join("\n")}`);

    const items = await page.locator("#updates > li").evaluateAll((lis) => lis.map((li) => ({ seq: li.getAttribute("data-seq"), text: li.textContent })));
    assert.deepEqual(
      items.map((item) => item.seq),
      ["1", "2", "3", "4", "5", "6"],
      `5 steps and the run's end, in order, no gaps, no repeats; got ${JSON.stringify(items)}`,
    );
    assert.deepEqual(
      items.slice(0, 5).map((item) => item.text),
      [0, 1, 2, 3, 4].map((i) => `step_completed step-${i}`),
    );
    assert.match(items[5]?.text ?? "", /^run_completed\b/);
    assert.deepEqual(JSON.parse((await page.locator("#output").textContent()) ?? ""), { total: 10 });

    // The SDK talked to Cairn's origin from the page's origin, and CORS let it through.
    const calls = cairnRequests.map((request) => `${request.method()} ${new URL(request.url()).pathname}`);
    const createRun = cairnRequests.find((request) => request.method() === "POST" && request.url().endsWith("/CreateRun"));
    assert.ok(createRun, `no CreateRun request went to ${cairnOrigin}; requests to it: ${JSON.stringify(calls)}`);
    assert.equal((await createRun.allHeaders()).origin, pageOrigin, "a cross-origin request carries the page's Origin");
    const createRunResponse = await createRun.response();
    assert.equal(createRunResponse?.status(), 200);
    assert.equal((await createRunResponse?.allHeaders())?.["access-control-allow-origin"], pageOrigin, "Cairn's CORS answer names the page's origin");
    assert.ok(
      cairnRequests.some((request) => request.url().endsWith("/WatchRun")),
      `no WatchRun request went to ${cairnOrigin}; requests to it: ${JSON.stringify(calls)}`,
    );

    assert.deepEqual(consoleErrors, [], `the page logged errors:\n${log.join("\n")}`);
  } finally {
    await context.close();
  }
});
