/**
 * The `cairn` command line: `main(argv)` picks the command from the leading words
 * ("runs create"), parses the rest with node:util parseArgs (the global flags --url,
 * --api-key, --json and --help are accepted before or after the command words), runs it
 * and turns every failure into a message on stderr and an exit code:
 *
 *   0  done (runs watch / runs create --wait: the run completed)
 *   1  the watched run failed          2  the watched run was cancelled
 *   3  usage error, or the server (cairn keys: the database) cannot be reached
 *   4  the server answered with an error (its Connect code and message are printed)
 *
 * cli/cairn.mjs is the executable that loads this file through tsx.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { CairnClient, CairnError } from "../sdk/index.js";
import { UnreachableError, UsageError } from "./args.js";
import { type Command, type CommandContext, ExitCode, type OptionSpecs, type OptionValues, type Output } from "./command.js";
import { batchesGet, batchesList } from "./commands/batches.js";
import { deployCheck } from "./commands/deploy-check.js";
import { scheduleCommands } from "./commands/schedules.js";
import { eventsSend } from "./commands/events.js";
import { keysCreate, keysList, keysRevoke } from "./commands/keys.js";
import { runsCancel, runsCreate, runsFork, runsGet, runsList, runsPause, runsResume, runsRetry, runsWatch, runsWhy } from "./commands/runs.js";
import { runsHistory } from "./commands/run-history.js";
import { serve } from "./commands/serve.js";
import { workflowsList } from "./commands/workflows.js";
import { WatchEndedError } from "./watch.js";

export const commands: readonly Command[] = [
  serve,
  workflowsList,
  runsCreate,
  runsGet,
  runsList,
  runsWatch,
  runsHistory,
  runsCancel,
  runsPause,
  runsResume,
  runsRetry,
  runsFork,
  batchesGet,
  batchesList,
  ...scheduleCommands,
  runsWhy,
  eventsSend,
  deployCheck,
  keysCreate,
  keysList,
  keysRevoke,
];

const defaultUrl = "http://127.0.0.1:8080";

const globalOptions: OptionSpecs = {
  url: { type: "string" },
  "api-key": { type: "string" },
  ca: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
};

/** Global flags that take a value, so the word after them is not a command word. */
const globalValueFlags = new Set(["--url", "--api-key", "--ca"]);

const processOutput: Output = {
  out: (text) => void process.stdout.write(`${text}\n`),
  err: (text) => void process.stderr.write(`${text}\n`),
};

export async function main(argv: readonly string[], io: Output = processOutput, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { words, rest } = splitCommandWords(argv);
  const command = commands.find((candidate) => candidate.name === words.join(" "));
  const wantsHelp = rest.some((arg) => arg === "--help" || arg === "-h") || words[0] === "help";
  const json = rest.includes("--json");

  if (!command) {
    if (words[0] === "help") return printHelp(io, words.slice(1));
    if (rest.includes("--version") && words.length === 0) {
      io.out(version());
      return ExitCode.ok;
    }
    const unknown = rest.find((arg) => !arg.startsWith("-"));
    if (wantsHelp && unknown === undefined) return printHelp(io, words);
    const group = words.join(" ");
    const problem =
      unknown !== undefined ? `unknown command "${[...words, unknown].join(" ")}"` : words.length > 0 ? `"${group}" needs a subcommand` : "no command given";
    io.err(`cairn: ${problem}\n`);
    io.err(generalUsage(words, true));
    return ExitCode.usage;
  }
  if (wantsHelp) {
    io.out(commandHelp(command));
    return ExitCode.ok;
  }

  let url = env.CAIRN_API_URL || defaultUrl;
  try {
    const { values, positionals } = parseCommandLine(command, rest);
    if (typeof values.url === "string") url = values.url;
    const apiKey = typeof values["api-key"] === "string" ? values["api-key"] : env.CAIRN_API_KEY || undefined;
    const caFile = typeof values.ca === "string" ? values.ca : env.CAIRN_CA_FILE || undefined;
    // Loaded here, not at the top: help and usage errors then come back without loading the SDK.
    const { createCairnClient } = await import("../sdk/index.js");
    let client: CairnClient | undefined;
    const context: CommandContext = {
      json: values.json === true,
      url,
      io,
      env,
      client() {
        client ??= createCairnClient({ baseUrl: checkUrl(url), ...(apiKey ? { apiKey } : {}), ...(caFile ? { ca: readCa(caFile) } : {}) });
        return client;
      },
      ...(apiKey ? { apiKey } : {}),
      async keyService() {
        const [{ createClient }, { createConnectTransport }, { KeyService }, { apiKeyInterceptor }] = await Promise.all([
          import("@connectrpc/connect"),
          import("@connectrpc/connect-node"),
          import("../sdk/gen/cairn/v1/keys_pb.js"),
          import("../sdk/index.js"),
        ]);
        const transport = createConnectTransport({
          baseUrl: checkUrl(url),
          httpVersion: "1.1",
          interceptors: apiKey ? [apiKeyInterceptor(apiKey)] : [],
          ...(caFile ? { nodeOptions: { ca: readCa(caFile) } } : {}),
        });
        return createClient(KeyService, transport);
      },
    };
    return await command.run(context, values, positionals);
  } catch (error) {
    return await reportError(io, json, command, error, url);
  }
}

/**
 * Leading words that name a command ("runs", "create"), skipping global flags and their
 * values; everything else stays in `rest`, in order, for parseArgs.
 */
function splitCommandWords(argv: readonly string[]): { words: string[]; rest: string[] } {
  const words: string[] = [];
  const rest: string[] = [];
  const names = commands.map((command) => command.name.split(" "));
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") break;
    if (arg.startsWith("-")) {
      rest.push(arg);
      if (globalValueFlags.has(arg) && i + 1 < argv.length) rest.push(argv[++i] ?? "");
      continue;
    }
    const candidate = [...words, arg];
    const isCommandWord =
      words[0] === "help" || (words.length === 0 && arg === "help") || names.some((name) => candidate.every((word, index) => name[index] === word));
    if (!isCommandWord) break;
    words.push(arg);
  }
  rest.push(...argv.slice(i));
  return { words, rest };
}

function parseCommandLine(command: Command, args: string[]): { values: OptionValues; positionals: string[] } {
  let parsed: { values: OptionValues; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: { ...globalOptions, ...command.options }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, ""));
  }
  for (const name of command.rejectsGlobals ?? []) {
    if (parsed.values[name] !== undefined) throw new UsageError(`--${name} does not apply to "cairn ${command.name}"`);
  }
  const expected = command.positionals;
  if (parsed.positionals.length < expected.length && !(command.positionalsOptional && parsed.positionals.length === 0)) {
    throw new UsageError(`missing ${expected.slice(parsed.positionals.length).map((name) => `<${name}>`).join(" ")}`);
  }
  if (parsed.positionals.length > expected.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[expected.length])}`);
  }
  for (const [index, name] of expected.slice(0, parsed.positionals.length).entries()) {
    if ((parsed.positionals[index] ?? "").trim() === "") throw new UsageError(`<${name}> must not be empty`);
  }
  return parsed;
}

/** The PEM of --ca / CAIRN_CA_FILE: the certificate authority (or self-signed certificate) the server's TLS certificate is checked against. */
function readCa(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(`--ca ${JSON.stringify(file)}: cannot read the file: ${(error as Error).message}`);
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new UsageError(`--ca ${JSON.stringify(file)} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return pem;
}

function checkUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(url)} is not a URL; use e.g. http://127.0.0.1:8080`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new UsageError(`--url ${JSON.stringify(url)} must be an http:// or https:// URL`);
  return url;
}

async function reportError(io: Output, json: boolean, command: Command, error: unknown, url: string): Promise<number> {
  let code: string;
  let message: string;
  let exitCode: number;
  if (error instanceof UsageError) {
    if (!json) {
      io.err(`cairn ${command.name}: ${error.message}`);
      io.err(`usage: ${usageLine(command)}\n(cairn ${command.name} --help for details)`);
      return ExitCode.usage;
    }
    [code, message, exitCode] = ["usage", error.message, ExitCode.usage];
  } else if (error instanceof UnreachableError) {
    [code, message, exitCode] = ["unavailable", error.message, ExitCode.usage];
  } else if (error instanceof WatchEndedError) {
    [code, message, exitCode] = ["unavailable", error.message, ExitCode.usage];
  } else {
    const { CairnError, codeName } = await import("../sdk/index.js");
    const cairnError = CairnError.from(error);
    const unreachable = connectionFailure(cairnError);
    if (unreachable !== undefined) {
      [code, message, exitCode] = ["unavailable", `cannot reach Cairn at ${url}: ${unreachable}`, ExitCode.usage];
    } else {
      [code, message, exitCode] = [codeName(cairnError.code), cairnError.rawMessage, ExitCode.requestFailed];
    }
  }
  io.err(json ? JSON.stringify({ error: { code, message } }) : code === "unavailable" || code === "usage" ? `cairn: ${message}` : `cairn: ${code}: ${message}`);
  return exitCode;
}

/**
 * The reason when the request never got an answer (connection refused, unknown host, reset):
 * fetch rejects with TypeError("fetch failed") whose causes say why (errors with a system
 * or undici `code`). Undefined for errors the server sent, and for anything else.
 */
function connectionFailure(error: CairnError): string | undefined {
  if ((error.cause as { isWireError?: boolean } | undefined)?.isWireError) return undefined;
  const chain: Error[] = [];
  for (let cause: unknown = error; cause instanceof Error && chain.length < 10; cause = cause.cause) chain.push(cause);
  const fetchFailed = chain.some((cause) => cause instanceof TypeError && /fetch failed|failed to fetch|terminated/i.test(cause.message));
  if (!fetchFailed) return undefined;
  const deepest = chain.at(-1) as Error;
  const reasons = deepest instanceof AggregateError ? deepest.errors.map((inner: unknown) => (inner instanceof Error ? inner.message : String(inner))) : [deepest.message];
  return [...new Set(reasons)].join("; ");
}

// ---------------------------------------------------------------------------------------------
// Help

function usageLine(command: Command): string {
  return `cairn ${command.name}${command.usage ? ` ${command.usage}` : ""}`;
}

const globalHelp: [string, string][] = [
  ["--url URL", `the Cairn server (default: $CAIRN_API_URL, else ${defaultUrl})`],
  ["--api-key KEY", "sent as X-Api-Key (default: $CAIRN_API_KEY)"],
  ["--ca FILE", "PEM certificate(s) to trust for an https:// server, e.g. a self-signed one (default: $CAIRN_CA_FILE)"],
  ["--json", "machine-readable output: one JSON document (runs watch: one JSON object per line)"],
  ["-h, --help", "help for a command, e.g. cairn runs create --help"],
];

function optionList(options: readonly (readonly [string, string])[]): string {
  const width = Math.max(...options.map(([name]) => name.length));
  return options.map(([name, text]) => `  ${name.padEnd(width)}  ${text}`).join("\n");
}

/** The command list; `brief` (after a usage error) leaves out the global options and exit codes. */
function generalUsage(prefix: readonly string[] = [], brief = false): string {
  const shown = commands.filter((command) => prefix.every((word, index) => command.name.split(" ")[index] === word));
  const list = (shown.length > 0 ? shown : commands).map((command) => [[command.name, ...command.positionals.map((name) => `<${name}>`)].join(" "), command.summary] as const);
  const lines = [
    "usage: cairn <command> [options]",
    "",
    "commands:",
    optionList(list),
    ...(brief ? ["", "cairn --help: global options and exit codes; cairn <command> --help: a command's options"] : []),
  ];
  if (brief) return lines.join("\n");
  return [
    ...lines,
    "",
    "global options:",
    optionList(globalHelp),
    "",
    "exit codes:",
    "  0  done; runs watch and runs create --wait: the run completed",
    "  1  the run failed",
    "  2  the run was cancelled",
    "  3  usage error, or the server (cairn keys: the database) cannot be reached",
    "  4  the server answered with an error (its Connect code and message are printed); cairn keys revoke: no such key",
  ].join("\n");
}

function commandHelp(command: Command): string {
  const parts = [`usage: ${usageLine(command)}`, "", `${command.summary[0]?.toUpperCase()}${command.summary.slice(1)}.`];
  if (command.description) parts.push("", command.description);
  if (command.optionHelp?.length) parts.push("", "options:", optionList(command.optionHelp));
  const globals = globalHelp.filter(([flag]) => !command.rejectsGlobals?.some((name) => flag.split(" ")[0] === `--${name}`));
  if (globals.some(([flag]) => !flag.includes("--help"))) parts.push("", "global options:", optionList(globals));
  return parts.join("\n");
}

function printHelp(io: Output, words: readonly string[]): number {
  const command = commands.find((candidate) => candidate.name === words.join(" "));
  if (command) io.out(commandHelp(command));
  else if (words.length > 0 && !commands.some((candidate) => candidate.name.startsWith(`${words.join(" ")} `))) {
    io.err(`cairn: unknown command "${words.join(" ")}"\n`);
    io.err(generalUsage([], true));
    return ExitCode.usage;
  } else io.out(`cairn: operate a Cairn workflow server\n\n${generalUsage(words)}`);
  return ExitCode.ok;
}

function version(): string {
  const manifest = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string };
  return `cairn ${manifest.version ?? "unknown"}`;
}
