/**
 * What every command is made of: its name, its help, its flags (node:util parseArgs
 * options) and a `run` that gets the parsed values and a context holding the global
 * flags, the output streams and a lazily made SDK client. `run` resolves the exit code.
 */
import type { ParseArgsConfig } from "node:util";
import type { Client } from "@connectrpc/connect";
import type { KeyService } from "../sdk/gen/cairn/v1/keys_pb.js";
import type { CairnClient } from "../sdk/index.js";

/** Exit codes, the same for every command (also listed in `cairn --help`). */
export const ExitCode = {
  /** Done; for `runs watch` and `runs create --wait`: the run completed. */
  ok: 0,
  /** The watched run failed. */
  runFailed: 1,
  /** `deploy check`: some run in flight would diverge on the new code. */
  checkFailed: 1,
  /** The watched run was cancelled. */
  runCancelled: 2,
  /** The command line was wrong, or the server could not be reached. */
  usage: 3,
  /** The server answered with an error (its Connect code and message are printed). */
  requestFailed: 4,
} as const;

export type OptionSpecs = NonNullable<ParseArgsConfig["options"]>;
export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export interface CommandContext {
  /** --json: machine-readable output. */
  readonly json: boolean;
  /** The server's base URL (--url, $CAIRN_API_URL, or the default). */
  readonly url: string;
  readonly io: Output;
  /** The environment the command runs with (DATABASE_URL, CAIRN_DATA_DIR, ...). */
  readonly env: NodeJS.ProcessEnv;
  /** The SDK client for `url` with the API key; made on first use. */
  client(): CairnClient;
  /** The API key (--api-key or $CAIRN_API_KEY), if any. */
  readonly apiKey?: string;
  /** A KeyService client for `url` with the API key; made on first use. */
  keyService(): Promise<Client<typeof KeyService>>;
}

export interface Command {
  /** The words that select it: "runs create". */
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** What follows the name in the usage line: "<workflow> [--input JSON | --input-file FILE] ...". */
  readonly usage: string;
  /** Paragraphs shown by --help after the usage line. */
  readonly description?: string;
  /** Flag help: [flag, meaning]. */
  readonly optionHelp?: readonly (readonly [string, string])[];
  readonly options: OptionSpecs;
  /** Names of the positional arguments, all required (unless positionalsOptional). */
  readonly positionals: readonly string[];
  /** The positionals may all be left out (the bulk forms of runs cancel|pause|resume take filter flags instead). */
  readonly positionalsOptional?: boolean;
  /** Global flags that make no sense here (e.g. --url for serve). */
  readonly rejectsGlobals?: readonly string[];
  run(context: CommandContext, values: OptionValues, positionals: readonly string[]): Promise<number>;
}

export function stringValue(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

export function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/** Pretty JSON for `--json`: one document, Dates as ISO strings. */
export function jsonDocument(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
