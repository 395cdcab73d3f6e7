// README.md's "Testing workflows" section shows examples/workflows.test.ts in full; CI runs that file (the
// `examples` project), and this keeps the README's copy from drifting away from it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { test } from "vitest";

const root = resolve(import.meta.dirname, "../..");

test("README.md shows examples/workflows.test.ts exactly as it is", () => {
  const readme = readFileSync(resolve(root, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Testing workflows"));
  const block = /\n```ts\n([\s\S]*?)```\n/.exec(section)?.[1];
  assert.ok(block, "README.md has no ts block in its Testing workflows section");
  assert.equal(block, readFileSync(resolve(root, "examples/workflows.test.ts"), "utf8"));
});
