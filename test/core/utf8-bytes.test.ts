/**
 * utf8Bytes counts what the store and the wire count (byte budgets, payload limits) without encoding: it must agree
 * with a real UTF-8 encoder on every kind of string, including surrogate pairs and lone surrogates.
 */
import assert from "node:assert/strict";
import { test } from "vitest";
import { utf8Bytes } from "../../server/core/json.js";

const encoded = (text: string) => new TextEncoder().encode(text).byteLength;

test("utf8Bytes agrees with an encoder: ASCII, 2-, 3- and 4-byte characters, lone surrogates, empty", () => {
  const samples = ["", "plain ascii", "é", "ß€", "日本語", "😀", "a😀b", "\ud83d", "\ude00", "x\ud83dy", "\ude00\ud83d", "😀\ud83d", '{"k":"välue 😀 ✓"}'];
  for (const text of samples) assert.equal(utf8Bytes(text), encoded(text), JSON.stringify(text));
});

test("utf8Bytes agrees with an encoder on random strings of any UTF-16 units", () => {
  let seed = 42;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  for (let n = 0; n < 2000; n++) {
    const units = Array.from({ length: next() % 40 }, () => {
      const pick = next() % 5;
      // Mostly ASCII, then 2-byte, 3-byte, high and low surrogates (paired or not, as they fall).
      return pick === 0 ? next() % 0x80 : pick === 1 ? 0x80 + (next() % 0x780) : pick === 2 ? 0x800 + (next() % 0xd000) : pick === 3 ? 0xd800 + (next() % 0x400) : 0xdc00 + (next() % 0x400);
    });
    const text = String.fromCharCode(...units);
    assert.equal(utf8Bytes(text), encoded(text), JSON.stringify(text));
  }
});
