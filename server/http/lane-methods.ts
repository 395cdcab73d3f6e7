/**
 * The methods a lane serves in front of the Connect adapter (unary-lane.ts, stream-lane.ts): what `routes`
 * registers, recorded as Connect's router would see it, of one kind. Services or methods registered with options of
 * their own stay with the adapter, which knows what those options mean.
 */
import { createMethodImplSpec, createServiceImplSpec, type ConnectRouter, type MethodImplSpec } from "@connectrpc/connect";

export function laneMethodsOf<K extends MethodImplSpec["kind"]>(routes: (router: ConnectRouter) => void, kind: K): Extract<MethodImplSpec, { kind: K }>[] {
  const specs: MethodImplSpec[] = [];
  const recorder: ConnectRouter = {
    handlers: [],
    service(service, implementation, options) {
      if (!options) specs.push(...Object.values(createServiceImplSpec(service, implementation).methods));
      return recorder;
    },
    rpc(method, impl, options) {
      if (!options) specs.push(createMethodImplSpec(method, impl));
      return recorder;
    },
  };
  routes(recorder);
  return specs.filter((spec): spec is Extract<MethodImplSpec, { kind: K }> => spec.kind === kind);
}
