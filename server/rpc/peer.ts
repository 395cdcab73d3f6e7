/**
 * The peer address of a call (the TCP remote address of its connection), for limits that apply per peer when
 * there is no key to count by: open mode's per-caller stream caps, and the failed-auth rate limit. Every entry
 * point puts it in the call's context values: the Connect adapter, the unary lane and the REST routes.
 */
import { type ContextValues, createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";

export const peerKey = createContextKey<string | undefined>(undefined, { description: "cairn peer address" });

/** Context values carrying the peer of a Node request (HTTP/1.1 or HTTP/2: both have `socket`). */
export function peerContextValues(req: { socket?: { remoteAddress?: string | undefined } | null }): ContextValues {
  return createContextValues().set(peerKey, req.socket?.remoteAddress);
}

/** The peer, or "unknown" (an in-memory transport in tests: every such call counts as one peer). */
export function peerOf(values: HandlerContext["values"]): string {
  return values.get(peerKey) ?? "unknown";
}
