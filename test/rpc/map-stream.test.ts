// mapStream (server/rpc/map-stream.ts) against the generator it replaces: `for await (const x of source) yield f(x)`.
import assert from "node:assert/strict";
import { test } from "vitest";
import { mapStream } from "../../server/rpc/map-stream.js";

/** A source of 1, 2, 3 that records whether it was closed (its finally ran). */
function source(log: string[]): AsyncIterable<number> {
  return (async function* () {
    try {
      yield 1;
      yield 2;
      yield 3;
    } finally {
      log.push("closed");
    }
  })();
}

test("every item converted, in order, then the end", async () => {
  const log: string[] = [];
  const out: string[] = [];
  for await (const item of mapStream(() => source(log), (n) => `#${n}`)) out.push(item);
  assert.deepEqual(out, ["#1", "#2", "#3"]);
  assert.deepEqual(log, ["closed"]);
});

test("a consumer that stops early closes the source", async () => {
  const log: string[] = [];
  for await (const item of mapStream(() => source(log), (n) => n)) if (item === 2) break;
  assert.deepEqual(log, ["closed"]);
  const iterator = mapStream(() => source(log), (n) => n)[Symbol.asyncIterator]();
  await iterator.next();
  await assert.rejects(iterator.throw!(new Error("stop")), /stop/);
  assert.deepEqual(log, ["closed", "closed"]);
});

test("a conversion that throws closes the source and fails the stream", async () => {
  const log: string[] = [];
  const iterable = mapStream(
    () => source(log),
    (n) => {
      if (n === 2) throw new Error("bad item");
      return n;
    },
  );
  const seen: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const item of iterable) seen.push(item);
    })(),
    /bad item/,
  );
  assert.deepEqual(seen, [1]);
  assert.deepEqual(log, ["closed"]);
});

test("the source is opened when iteration starts, and an error opening it is the stream's", async () => {
  let opened = 0;
  const iterable = mapStream(() => {
    opened++;
    throw new Error("cannot open");
  }, (n: number) => n);
  assert.equal(opened, 0);
  await assert.rejects(
    (async () => {
      for await (const _ of iterable) assert.fail("no item expected");
    })(),
    /cannot open/,
  );
  assert.equal(opened, 1);
});
