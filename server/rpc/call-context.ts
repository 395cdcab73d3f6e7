/** A Connect call as the runs service sees it: the caller's namespace, the call's signal and its deadline rule. */
import type { HandlerContext } from "@connectrpc/connect";
import type { Call } from "../runs/runs-deps.js";
import { callerOf } from "./auth.js";
import { throwIfDeadlinePassed } from "./deadline.js";

export function callOf(context: HandlerContext): Call {
  return {
    namespace: callerOf(context).namespace,
    signal: context.signal,
    throwIfDeadlinePassed: () => throwIfDeadlinePassed(context.signal),
  };
}
