/**
 * Letting a server stream end on its own once the caller has what it wanted. Stopping early cancels the HTTP/2
 * stream (RST_STREAM), and Node's HTTP/2 server, Cairn's included, closes a connection with INTERNAL_ERROR, and
 * every call on it, once the client has reset more than 1,000 streams in a burst (then 33 a second): nghttp2's
 * defence against "rapid reset" floods (CVE-2023-44487). A client that watches thousands of runs on one
 * connection must let each stream end on its own.
 */

/** `next` if it settles within `withinMs`, else "late" (`next` is left pending for whoever awaits it later). */
export async function settledWithin<T>(next: Promise<T>, withinMs: number): Promise<T | "late"> {
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
