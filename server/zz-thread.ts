import { parentPort } from "node:worker_threads";
import { parseDuration } from "./core/duration.js";
const x: number = parseDuration("1s");
parentPort!.postMessage({ x });
