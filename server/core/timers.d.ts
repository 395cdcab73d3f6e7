// The core compiles without Node's types (tsconfig.json here): web-standard APIs only, plus Node's setImmediate,
// which the activation uses to let the handler run until it blocks (a macrotask after every pending microtask).
declare function setImmediate(callback: () => void): unknown;
