/**
 * The page script of the end-to-end browser test (test/e2e/browser.test.ts), bundled by the test with
 * esbuild for the browser: it uses the SDK over Connect-Web to create a `many_steps` run, renders
 * each streamed update as it arrives, and ends by writing the run's output into `#output` and its
 * final status into `#status` (in that order, so a reader that sees the status sees the output).
 *
 * The Cairn server's base URL comes from the page's hash (`/#http://127.0.0.1:8080`) or from
 * `globalThis.CAIRN_BASE_URL`. A failure shows as status "error" with the message in `#error`.
 */
import { createCairnClient, type RunInfo } from "../../sdk/client.js";

// This file is also type-checked by the root tsconfig, which has Node's types and no DOM lib: it
// names the few DOM members it uses itself rather than pulling the DOM lib into the whole program.
interface PageElement {
  textContent: string | null;
  setAttribute(name: string, value: string): void;
  append(...nodes: PageElement[]): void;
}
interface PageGlobals {
  document: {
    getElementById(id: string): PageElement | null;
    createElement(tag: string): PageElement;
  };
  location: { hash: string };
  CAIRN_BASE_URL?: string;
}
const page = globalThis as unknown as PageGlobals;

function element(id: string): PageElement {
  const found = page.document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found;
}

async function main(): Promise<void> {
  const baseUrl = decodeURIComponent(page.location.hash.slice(1)) || page.CAIRN_BASE_URL;
  if (!baseUrl) throw new Error("no Cairn URL: open the page as /#http://host:port or set globalThis.CAIRN_BASE_URL");

  const client = createCairnClient({ baseUrl });
  const run = await client.createRun<{ total: number }>("many_steps", { steps: 5, delayMs: 50 }, { eagerStart: true });
  element("run-id").textContent = run.runId;

  const list = element("updates");
  list.setAttribute("data-status", run.run.status);
  let last: RunInfo = run.run;
  for await (const update of client.watchRun(run.runId)) {
    if (update.type === "entry") {
      const { sequence, kind, name } = update.entry;
      const item = page.document.createElement("li");
      item.setAttribute("data-seq", String(sequence));
      item.textContent = `${kind} ${name}`.trim();
      list.append(item);
    } else {
      last = update.run;
      // The live status goes on the list; #status only gets the final one.
      list.setAttribute("data-status", last.status);
    }
  }

  element("output").textContent = last.output === undefined ? "" : JSON.stringify(last.output);
  if (last.error) element("error").textContent = `${last.error.name}: ${last.error.message}`;
  element("status").textContent = last.status;
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  console.error("cairn page failed:", message);
  for (const [id, text] of [["error", message], ["status", "error"]] as const) {
    const target = page.document.getElementById(id);
    if (target) target.textContent = text;
  }
});
