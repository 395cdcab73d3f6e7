/**
 * Lets workflow folders anywhere (an overlay mounted into a container, a folder next to a
 * project) import the SDK with no node_modules of their own: Node module hooks map
 * `@cairnjs/sdk` and its subpaths to this server's own copy, which is also the copy the
 * engine checks `defineWorkflow` values and SDK errors against. Other packages an overlay
 * uses (zod, ...) resolve from the overlay's own node_modules as usual.
 *
 * The compiled server (dist/) also has no TypeScript loader, so the hooks compile `.ts` and
 * `.mts` workflow files with esbuild when they load; from the sources (npm start), tsx does it.
 */
import { existsSync } from "node:fs";
import { register } from "node:module";

let registered = false;

/** The SDK entry points a workflow file may import, as URLs of this server's copy. */
function sdkEntries(): Record<string, string> {
  const file = (name: string): string => {
    const js = new URL(`../../sdk/${name}.js`, import.meta.url);
    // From the sources (tsx), sdk/*.ts is what exists; tsx loads it.
    return existsSync(js) ? js.href : new URL(`../../sdk/${name}.ts`, import.meta.url).href;
  };
  return {
    "@cairnjs/sdk": file("index"),
    "@cairnjs/sdk/workflow": file("workflow"),
    "@cairnjs/sdk/node": file("node-transport"),
  };
}

/** Installs the hooks once per process, before the first workflow file is imported. */
export function registerWorkflowHooks(): void {
  if (registered) return;
  registered = true;
  // Compiled, every .ts file is a workflow file and esbuild compiles it. From the sources, tsx
  // compiles the server's own files; workflow files outside the repository are compiled here too,
  // as ES modules, where tsx would take them for CommonJS (no package.json says "type": "module").
  const fromSources = import.meta.url.endsWith(".ts");
  const ownRoot = fromSources ? new URL("../../", import.meta.url).href : null;
  register(`data:text/javascript,${encodeURIComponent(hooksSource)}`, {
    data: { sdk: sdkEntries(), esbuild: import.meta.resolve("esbuild"), ownRoot },
  });
}

// Runs on Node's hooks thread, so it is plain JavaScript and gets what it needs through `data`.
const hooksSource = `
import { readFile } from "node:fs/promises";
let sdk = {};
let esbuildUrl = null;
let ownRoot = null;
let esbuild;
export function initialize(data) {
  sdk = data.sdk;
  esbuildUrl = data.esbuild;
  ownRoot = data.ownRoot;
}
const typescript = (url) =>
  /\\.m?ts$/.test(url) && url.startsWith("file:") && !url.includes("/node_modules/") && !(ownRoot && url.startsWith(ownRoot));
export async function resolve(specifier, context, next) {
  const mapped = sdk[specifier];
  // Resolved by the rest of the chain, so that tsx (from the sources) gets to load sdk/*.ts.
  if (mapped) return next(mapped, context);
  try {
    return await next(specifier, context);
  } catch (error) {
    // TypeScript convention: "./helper.js" in a .ts file means ./helper.ts.
    if (error?.code === "ERR_MODULE_NOT_FOUND" && context.parentURL && typescript(context.parentURL)
        && /^\\.\\.?\\//.test(specifier) && /\\.m?js$/.test(specifier)) {
      return next(specifier.replace(/js$/, "ts"), context);
    }
    throw error;
  }
}
export async function load(url, context, next) {
  if (!typescript(url)) return next(url, context);
  esbuild ??= await import(esbuildUrl);
  const path = new URL(url).pathname;
  const source = await readFile(path, "utf8");
  const result = await esbuild.transform(source, { loader: "ts", format: "esm", target: "node20", sourcefile: path, sourcemap: "inline" });
  return { format: "module", source: result.code, shortCircuit: true };
}
`;
