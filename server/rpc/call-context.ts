/** A Connect call as the runs service sees it: the caller's namespace, the call's signal and its deadline rule. */
import type { HandlerContext } from "@connectrpc/connect";
import type { Call } from "../runs/runs-deps.js";
import { callerOf } from "./auth.js";
import { throwIfDeadlinePassed } from "./deadline.js";

export function callOf(context: HandlerContext): Call {
  // The signal alone, not the context: a stream holds its Call for as long as it lasts.
  const signal = context.signal;
  return {
    namespace: callerOf(context).namespace,
    signal,
    throwIfDeadlinePassed: () => throwIfDeadlinePassed(signal),
  };
}
