/**
 * A workflow's input schema as JSON Schema, for clients that build forms from it (the console's
 * start-run form). Standard Schema 1.1 lets a library describe itself through
 * `~standard.jsonSchema` (Standard JSON Schema: zod 4, arktype, valibot through its adapter);
 * a library without it, or a schema it cannot express (a transform, a custom check), gives "".
 */
import type { StandardJSONSchemaV1, StandardSchemaV1 } from "@standard-schema/spec";

export function inputJsonSchema(schema: StandardSchemaV1 | undefined): string {
  const converter = (schema as Partial<StandardJSONSchemaV1> | undefined)?.["~standard"]?.jsonSchema;
  if (typeof converter?.input !== "function") return "";
  try {
    return JSON.stringify(converter.input({ target: "draft-2020-12" }));
  } catch {
    // Unrepresentable in JSON Schema: the console falls back to a JSON editor, CreateRun still validates.
    return "";
  }
}
