/**
 * Request validation from the proto contract: the `buf.validate` rules in
 * `proto/cairn/v1/*.proto` (required fields, lengths, UUID formats, ranges,
 * defined enum values) are checked here, by protovalidate, before any service
 * code runs. A request that breaks rules is refused with INVALID_ARGUMENT; the
 * message lists every violation as `field path: what is wrong [rule id]`, and
 * the error carries them as a `buf.validate.Violations` detail for programs.
 *
 * Rules protovalidate cannot express stay in the services: JSON size limits
 * (CAIRN_MAX_*_BYTES), "input is a JSON object", the workflow's Standard
 * Schema, and anything that needs the database.
 *
 * The validator is built once and its plans are compiled at start-up
 * (`warm`), so a request pays only for evaluating its message's rules.
 */
import { create, type DescMessage, type DescService, type Message } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { createValidator, RuntimeError, type Validator, type Violation, violationsToProto } from "@bufbuild/protovalidate";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

export interface RequestValidator {
  /** Throws INVALID_ARGUMENT listing every violated rule; returns quietly for a valid message. */
  check(schema: DescMessage, message: Message): void;
}

let shared: { validator: Validator; warmed: Set<string> } | undefined;

/**
 * The process's validator: protovalidate's validator holds no per-server state, so every server in a process (tests
 * start several) shares one, and compiles each message type's rules once.
 */
export function createRequestValidator(services: readonly DescService[] = []): RequestValidator {
  shared ??= { validator: createValidator(), warmed: new Set() };
  const { validator, warmed } = shared;
  // Compile every request type's rules now rather than on the first request of each kind (the results do not matter).
  for (const service of services) {
    if (warmed.has(service.typeName)) continue;
    for (const method of service.methods) validator.validate(method.input, create(method.input));
    warmed.add(service.typeName);
  }
  return {
    check(schema, message) {
      const result = validator.validate(schema, message);
      if (result.kind === "valid") return;
      if (result.kind === "invalid") {
        const [violations] = violationsToProto(result.violations);
        throw new ConnectError(describeViolations(schema, message, result.violations), Code.InvalidArgument, undefined, [
          { desc: ViolationsSchema, value: violations },
        ]);
      }
      // A rule could not be evaluated on this message's data (a CompilationError is our bug and stays INTERNAL).
      if (result.error instanceof RuntimeError) {
        throw new ConnectError(`invalid ${schema.typeName}: ${result.error.message}`, Code.InvalidArgument);
      }
      throw result.error;
    },
  };
}

/** Validates every request message (unary, and each message of a request stream) before the handler sees it. */
export function validationInterceptor(validator: RequestValidator): Interceptor {
  return (next) => async (request) => {
    if (!request.stream) {
      validator.check(request.method.input, request.message);
      return next(request);
    }
    return next({ ...request, message: checkEach(validator, request.method.input, request.message) });
  };
}

async function* checkEach<T extends Message>(validator: RequestValidator, schema: DescMessage, messages: AsyncIterable<T>): AsyncIterable<T> {
  for await (const message of messages) {
    validator.check(schema, message);
    yield message;
  }
}

/** `invalid cairn.v1.GetRunRequest: run_id: must be a valid UUID, got "42" [string.uuid]; ...` */
export function describeViolations(schema: DescMessage, message: Message, violations: readonly Violation[]): string {
  const parts = violations.map((violation) => {
    const path = pathToString(violation.field) || "(request)";
    return `${path}: ${violation.message}${shownValue(message, violation)} [${violation.ruleId}]`;
  });
  return `invalid ${schema.typeName}: ${parts.join("; ")}`;
}

/** The offending value of a top-level scalar field, when it is short enough to help (e.g. a malformed id). */
function shownValue(message: Message, violation: Violation): string {
  const [field, ...rest] = violation.field;
  if (!field || rest.length > 0 || field.kind !== "field" || (field.fieldKind !== "scalar" && field.fieldKind !== "enum")) return "";
  const value: unknown = (message as unknown as Record<string, unknown>)[field.localName];
  if (typeof value === "string") return value === "" || value.length > 64 ? "" : `, got ${JSON.stringify(value)}`;
  if (typeof value === "number" || typeof value === "bigint") return `, got ${value}`;
  return "";
}
