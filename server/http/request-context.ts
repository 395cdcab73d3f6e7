/**
 * The context values every entry point (the Connect adapter, the unary lane, the REST routes) gives a call from
 * its Node request: the peer address (limits kept per peer, server/rpc/peer.ts) and the API key the HTTP key gate
 * verified from the headers (server/http/key-gate.ts), which the auth interceptor then does not look up again.
 */
import type { ContextValues } from "@connectrpc/connect";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { verifiedKeyKey } from "../rpc/auth.js";
import { peerContextValues } from "../rpc/peer.js";
import { keyVerifiedAtGate } from "./key-gate.js";

export function requestContextValues(req: IncomingMessage | Http2ServerRequest): ContextValues {
  const values = peerContextValues(req);
  const key = keyVerifiedAtGate(req);
  return key ? values.set(verifiedKeyKey, key) : values;
}
