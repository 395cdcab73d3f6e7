/**
 * Letting a server stream end on its own once the caller has what it wanted. Stopping early cancels the HTTP/2
 * stream (RST_STREAM), and Node's HTTP/2 server, Cairn's included, closes a connection with INTERNAL_ERROR, and
 * every call on it, once the client has reset more than 1,000 streams in a burst (then 33 a second): nghttp2's
 * defence against "rapid reset" floods (CVE-2023-44487). A client that watches thousands of runs on one
 * connection must let each stream end on its own.
 */

/** What came after the wanted message, and whether the stream ended within the bounds. */
export interface Remainder<T> {
  /** Messages read after the wanted one, in order. */
  held: T[];
  /** The stream ended: nothing more will come. */
  ended: boolean;
  /** A read still in flight (the bounds ran out first); whoever reads on takes it before asking for another. */
  pending: Promise<IteratorResult<T>> | undefined;
}

/**
 * Reads on from `messages` until the stream ends, `withinMs` passes or `maxHeld` messages came. A read that fails
 * counts as running out of time: it stays `pending`, so the caller meets the failure when it reads on.
 */
export async function readOnToEnd<T>(messages: AsyncIterator<T>, withinMs: number, maxHeld: number): Promise<Remainder<T>> {
  const held: T[] = [];
  const until = Date.now() + withinMs;
  while (held.length < maxHeld) {
    const pending = messages.next();
    const ahead = await settledWithin(pending, Math.max(0, until - Date.now())).catch(() => "late" as const);
    if (ahead === "late") return { held, ended: false, pending };
    if (ahead.done) return { held, ended: true, pending: undefined };
    held.push(ahead.value);
  }
  return { held, ended: false, pending: undefined };
}

/** `next` if it settles within `withinMs`, else "late" (`next` is left pending for whoever awaits it later). */
async function settledWithin<T>(next: Promise<T>, withinMs: number): Promise<T | "late"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), withinMs);
  });
  try {
    return await Promise.race([next, late]);
  } finally {
    clearTimeout(timer);
  }
}
