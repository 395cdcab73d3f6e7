// Builds `@cairnjs/sdk/testing` into dist/ after tsc has built the rest of the SDK. The kit's sources are the
// engine's own (server/testing over the pure core in server/core), outside this package's folder, so:
// - dist/testing.js is one esbuild bundle of sdk/testing.ts and everything it imports (@noble/hashes included:
//   the package needs nothing more installed), except the SDK's workflow module, which stays an import of
//   ./workflow.js: a NonRetryableError a workflow throws must be the class the bundled core checks for;
// - dist/testing.d.ts re-exports declarations tsc emits into dist/kit (tsconfig.testing.json), whose copy of
//   workflow.d.ts is replaced by a re-export of dist/workflow.d.ts, so the types are the package's own.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);

execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", join(sdk, "tsconfig.testing.json")], { stdio: "inherit" });
writeFileSync(join(sdk, "dist/kit/sdk/workflow.d.ts"), `export * from "../../workflow.js";\n`);
writeFileSync(join(sdk, "dist/testing.d.ts"), `export * from "./kit/sdk/testing.js";\n`);

await build({
  absWorkingDir: sdk,
  entryPoints: ["testing.ts"],
  outfile: "dist/testing.js",
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  sourcemap: true,
  logLevel: "warning",
  plugins: [
    {
      name: "the-sdk-workflow-module-stays-shared",
      setup(plugin) {
        plugin.onResolve({ filter: /(^|\/)sdk\/workflow\.js$/ }, () => ({ path: "./workflow.js", external: true }));
      },
    },
  ],
});
