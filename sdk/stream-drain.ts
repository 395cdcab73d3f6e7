/**
 * Reading a server stream to its end once the caller has what it wanted. Stopping early cancels the HTTP/2
 * stream (RST_STREAM), and Node's HTTP/2 server, Cairn's included, closes a connection with INTERNAL_ERROR, and
 * every call on it, once the client has reset more than 1,000 streams in a burst (then 33 a second): nghttp2's
 * defence against "rapid reset" floods (CVE-2023-44487). A client that watches thousands of runs on one
 * connection must let each stream end on its own.
 */

/**
 * The rest of a stream whose server is about to end it, read until it ends or `withinMs` passes (then the
 * caller's stop cancels it, as it would have). Errors after the wanted message are not the caller's concern:
 * what was read is returned.
 */
export async function drainStream<T>(messages: AsyncIterator<T>, withinMs: number): Promise<T[]> {
  const rest: T[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), withinMs);
  });
  try {
    for (;;) {
      const next = await Promise.race([messages.next(), late]);
      if (next === "late" || next.done) return rest;
      rest.push(next.value);
    }
  } catch {
    return rest;
  } finally {
    clearTimeout(timer);
  }
}
