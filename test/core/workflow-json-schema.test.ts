// A workflow's input schema as JSON Schema (server/workflows/json-schema.ts): what ListWorkflows sends as
// input_json_schema and the console builds its start-run form from.
import assert from "node:assert/strict";
import { test } from "vitest";
import type { StandardSchemaV1 } from "@standard-schema/spec";
import { z } from "zod";
import { inputJsonSchema } from "../../server/workflows/json-schema.js";

test("a zod 4 schema describes its input as draft 2020-12 JSON Schema (defaults make fields optional)", () => {
  const schema = JSON.parse(inputJsonSchema(z.object({ id: z.string().min(1), count: z.number().int().default(3), mode: z.enum(["a", "b"]) })));
  assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.deepEqual(schema.properties.mode, { type: "string", enum: ["a", "b"] });
  assert.deepEqual(schema.properties.count, { type: "integer", default: 3, minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER });
  assert.deepEqual(schema.required, ["id", "mode"]);
});

test("no schema, a library without Standard JSON Schema, or a schema it cannot express give an empty string", () => {
  const plain: StandardSchemaV1 = { "~standard": { version: 1, vendor: "hand-made", validate: (value) => ({ value }) } };
  assert.equal(inputJsonSchema(undefined), "");
  assert.equal(inputJsonSchema(plain), "");
  // zod refuses to describe a custom check as JSON Schema: the console falls back to a JSON field.
  assert.equal(inputJsonSchema(z.object({ when: z.custom<Date>((v) => v instanceof Date) })), "");
});
