/**
 * The REST routes call the services through an in-memory Connect router (createRouterTransport), whose client
 * hands the server side no context values: without this, every REST call had the peer "unknown" (one bucket for
 * every REST caller's per-peer limits) and its key, verified by the HTTP key gate, was looked up again. A REST call
 * runs inside `withRequestValues` with its Node request's context values (server/http/request-context.ts), and
 * `carryRequestValues` makes the router's handlers give them to the call.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { ConnectRouter, ContextValues } from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";

const requestValues = new AsyncLocalStorage<ContextValues>();

/** Runs `call` with these context values for every service call it makes through a router set up below. */
export function withRequestValues<T>(values: ContextValues, call: () => T): T {
  return requestValues.run(values, call);
}

/** Wraps the router's handlers (call after registering its services) so that calls see their request's values. */
export function carryRequestValues(router: ConnectRouter): void {
  router.handlers.splice(0, router.handlers.length, ...router.handlers.map(carrying));
}

function carrying(handler: UniversalHandler): UniversalHandler {
  const wrapped = (request: Parameters<UniversalHandler>[0]) => handler({ ...request, contextValues: requestValues.getStore() ?? request.contextValues });
  return Object.assign(wrapped, {
    method: handler.method,
    service: handler.service,
    requestPath: handler.requestPath,
    protocolNames: handler.protocolNames,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}
