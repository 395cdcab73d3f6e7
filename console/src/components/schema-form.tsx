/**
 * A form for a workflow's input, built from its JSON Schema: strings, numbers, integers, booleans and
 * enums get their own inputs; anything else (nested objects, arrays, unions) a JSON field. Without a
 * schema the whole input is one JSON field. The server validates again on CreateRun.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { useState } from "preact/hooks";

interface Property {
  type?: string | string[];
  enum?: JsonValue[];
  default?: JsonValue;
  description?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
}
interface ObjectSchema {
  type?: string;
  properties?: Record<string, Property>;
  required?: string[];
}

export function parseSchema(text: string): ObjectSchema | undefined {
  if (!text) return undefined;
  try {
    const schema = JSON.parse(text) as ObjectSchema;
    return schema.type === "object" && schema.properties ? schema : undefined;
  } catch {
    return undefined;
  }
}

type Field = { name: string; kind: "string" | "number" | "integer" | "boolean" | "enum" | "json"; required: boolean; property: Property };

function fieldsOf(schema: ObjectSchema): Field[] {
  return Object.entries(schema.properties ?? {}).map(([name, property]) => {
    const required = schema.required?.includes(name) ?? false;
    const type = Array.isArray(property.type) ? undefined : property.type;
    const kind = property.enum ? "enum" : type === "string" || type === "number" || type === "integer" || type === "boolean" ? type : "json";
    return { name, kind, required, property };
  });
}

function initial(field: Field): string {
  const value = field.property.default;
  if (value === undefined) return field.kind === "enum" && field.required ? JSON.stringify(field.property.enum?.[0] ?? "") : "";
  return field.kind === "string" ? String(value) : JSON.stringify(value);
}

/** Turns the form's strings into the input object; throws a message naming the field on bad JSON or numbers. */
function inputOf(fields: Field[], values: Record<string, string>, flags: Record<string, boolean>): JsonObject {
  const input: JsonObject = {};
  for (const field of fields) {
    if (field.kind === "boolean") {
      if (flags[field.name] !== undefined) input[field.name] = flags[field.name] ?? false;
      continue;
    }
    const text = values[field.name] ?? "";
    if (text === "") continue;
    if (field.kind === "string") input[field.name] = text;
    else if (field.kind === "number" || field.kind === "integer") {
      const n = Number(text);
      if (!Number.isFinite(n)) throw new Error(`${field.name}: not a number`);
      input[field.name] = n;
    } else {
      try {
        input[field.name] = JSON.parse(text) as JsonValue;
      } catch {
        throw new Error(`${field.name}: not valid JSON`);
      }
    }
  }
  return input;
}

export function SchemaForm({ schemaText, onSubmit, busy }: { schemaText: string; onSubmit: (input: JsonObject) => void; busy: boolean }) {
  const schema = parseSchema(schemaText);
  const fields = schema ? fieldsOf(schema) : [];
  const [values, setValues] = useState<Record<string, string>>(() => Object.fromEntries(fields.map((f) => [f.name, initial(f)])));
  const [flags, setFlags] = useState<Record<string, boolean>>(() =>
    Object.fromEntries(fields.filter((f) => f.kind === "boolean" && typeof f.property.default === "boolean").map((f) => [f.name, f.property.default as boolean])),
  );
  const [raw, setRaw] = useState("{}");
  const [problem, setProblem] = useState("");

  const submit = (event: Event) => {
    event.preventDefault();
    try {
      const input = schema ? inputOf(fields, values, flags) : (JSON.parse(raw) as JsonObject);
      if (!schema && (typeof input !== "object" || input === null || Array.isArray(input))) throw new Error("the input must be a JSON object");
      setProblem("");
      onSubmit(input);
    } catch (error) {
      setProblem(error instanceof Error ? error.message : String(error));
    }
  };

  return (
    <form class="schema-form" onSubmit={submit}>
      {!schema && (
        <label class="field">
          <span class="field-name">input (JSON object)</span>
          <textarea name="input" rows={4} value={raw} onInput={(e) => setRaw(e.currentTarget.value)} spellcheck={false} />
        </label>
      )}
      {fields.map((field) => (
        <label class={`field field-${field.kind}`} key={field.name}>
          <span class="field-name">
            {field.name}
            {field.required && <span class="required" title="required">*</span>}
            <span class="field-type">{field.kind === "enum" ? "one of" : field.kind}</span>
          </span>
          {field.kind === "boolean" ? (
            <input type="checkbox" name={field.name} checked={flags[field.name] ?? false} onChange={(e) => setFlags({ ...flags, [field.name]: e.currentTarget.checked })} />
          ) : field.kind === "enum" ? (
            <select name={field.name} value={values[field.name]} onChange={(e) => setValues({ ...values, [field.name]: e.currentTarget.value })}>
              {!field.required && <option value="">(unset)</option>}
              {(field.property.enum ?? []).map((option) => (
                <option value={JSON.stringify(option)}>{typeof option === "string" ? option : JSON.stringify(option)}</option>
              ))}
            </select>
          ) : field.kind === "json" ? (
            <textarea name={field.name} rows={2} value={values[field.name]} placeholder="JSON" spellcheck={false} onInput={(e) => setValues({ ...values, [field.name]: e.currentTarget.value })} />
          ) : field.kind === "string" ? (
            <input
              name={field.name}
              type="text"
              required={field.required}
              value={values[field.name]}
              placeholder={field.property.format ?? ""}
              onInput={(e) => setValues({ ...values, [field.name]: e.currentTarget.value })}
            />
          ) : (
            <input
              name={field.name}
              type="number"
              step={field.kind === "integer" ? 1 : "any"}
              required={field.required}
              value={values[field.name]}
              onInput={(e) => setValues({ ...values, [field.name]: e.currentTarget.value })}
            />
          )}
          {field.property.description && <span class="field-help">{field.property.description}</span>}
        </label>
      ))}
      {problem && <div class="error">{problem}</div>}
      <button type="submit" class="primary" disabled={busy}>
        Start run
      </button>
    </form>
  );
}
