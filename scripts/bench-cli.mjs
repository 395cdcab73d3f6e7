// `npm run bench:cli`: how long `cairn --help` takes from the installed bin. Packs this package
// (after `npm run build`), installs the tarball into a temporary folder outside the repository,
// runs `<prefix>/node_modules/.bin/cairn --help` RUNS times (default 30) and prints the median
// and the 90th percentile of the wall-clock times.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const runs = Number(process.env.RUNS ?? 30);
const dir = mkdtempSync(join(tmpdir(), "cairn-bench-cli-"));
try {
  execFileSync("npm", ["run", "build"], { cwd: root, stdio: "ignore" });
  execFileSync("npm", ["pack", "--ignore-scripts", "--pack-destination", dir], { cwd: root, stdio: "ignore" });
  const tarball = readdirSync(dir).find((name) => name.endsWith(".tgz"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "bench", private: true }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", join(dir, tarball)], { cwd: dir, stdio: "ignore" });
  const bin = join(dir, "node_modules/.bin/cairn");
  // Interleaved with a bare `node -e 0`, so a busy machine shows as a slow baseline, not a slow CLI.
  const times = { cli: [], node: [] };
  for (let i = 0; i < runs + 3; i++) {
    let start = process.hrtime.bigint();
    const result = spawnSync(bin, ["--help"], { encoding: "utf8" });
    const cli = Number(process.hrtime.bigint() - start) / 1e6;
    if (result.status !== 0 || !result.stdout.includes("usage: cairn")) throw new Error(`cairn --help failed: ${result.stderr}`);
    start = process.hrtime.bigint();
    spawnSync(process.execPath, ["-e", "0"]);
    const node = Number(process.hrtime.bigint() - start) / 1e6;
    if (i < 3) continue; // the first runs warm the file cache
    times.cli.push(cli);
    times.node.push(node);
  }
  const stats = (list) => {
    list.sort((a, b) => a - b);
    const at = (q) => list[Math.min(list.length - 1, Math.floor(q * list.length))].toFixed(0);
    return `median ${at(0.5)} ms, p90 ${at(0.9)} ms, min ${list[0].toFixed(0)} ms`;
  };
  console.log(`cairn --help (${bin}), ${runs} runs: ${stats(times.cli)}`);
  console.log(`node -e 0 (the floor on this machine now): ${stats(times.node)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
