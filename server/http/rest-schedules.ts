/**
 * REST routes for schedules, in front of the other handlers, calling the very ScheduleService implementation
 * the Connect routes serve (same interceptors: auth, validation, error codes), as rest.ts does for runs:
 *
 *   POST   /schedules              body CreateScheduleRequest {"schedule_id", "spec", "paused"}  → 200 {"schedule": {...}}
 *   GET    /schedules                                                                           → 200 {"schedules": [...]}
 *   GET    /schedules/{id}                                                                      → 200 {"schedule": {...}}
 *   DELETE /schedules/{id}                                                                      → 200 {}
 *   POST   /schedules/{id}/pause, /unpause                                                      → 200 {"schedule": {...}}
 *   POST   /schedules/{id}/trigger                                                              → 200 {"run_id": "..."}
 *
 * Responses are proto3 JSON with the proto field names; errors as in rest.ts.
 */
import { fromJson, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import {
  CreateScheduleRequestSchema,
  CreateScheduleResponseSchema,
  DeleteScheduleResponseSchema,
  GetScheduleResponseSchema,
  ListSchedulesResponseSchema,
  PauseScheduleResponseSchema,
  ScheduleService,
  TriggerScheduleResponseSchema,
  UnpauseScheduleResponseSchema,
} from "../../sdk/gen/cairn/v1/schedules_pb.js";
import type { NodeHandler } from "./listen.js";
import { carryRequestValues } from "./rest-call-context.js";
import { call, pathOf, readJsonBody, type RestOptions, sendError, sendMethodNotAllowed } from "./rest.js";

/** The path these routes answer (and everything under it). */
export const schedulesPath = "/schedules";

export function withScheduleRestRoutes(next: NodeHandler, service: ServiceImpl<typeof ScheduleService>, options: RestOptions): NodeHandler {
  const transport = createRouterTransport((router) => carryRequestValues(router.service(ScheduleService, service)), {
    transport: { useBinaryFormat: false },
    router: {
      interceptors: options.interceptors ?? [],
      readMaxBytes: options.readMaxBytes,
      ...(options.shutdownSignal ? { shutdownSignal: options.shutdownSignal } : {}),
    },
  });
  const client = createClient(ScheduleService, transport);

  return (req, res) => {
    const path = pathOf(req.url);
    if (path !== schedulesPath && !path.startsWith(`${schedulesPath}/`)) return next(req, res);
    const rest = path.slice(schedulesPath.length).replace(/^\/+|\/+$/g, "");
    const method = req.method ?? "GET";
    const served = async (): Promise<void> => {
      if (rest === "") {
        if (method === "GET") return call(res, req, ListSchedulesResponseSchema, (o) => client.listSchedules({}, o));
        if (method !== "POST") return sendMethodNotAllowed(res, method, path, "GET, POST");
        const body = await readJsonBody(req, res, options.readMaxBytes);
        if (body === undefined) return;
        let request: MessageShape<typeof CreateScheduleRequestSchema>;
        try {
          request = fromJson(CreateScheduleRequestSchema, body);
        } catch (error) {
          return sendError(res, new ConnectError(`invalid request body: ${(error as Error).message}`, Code.InvalidArgument));
        }
        return call(res, req, CreateScheduleResponseSchema, (o) => client.createSchedule(request, o));
      }
      const [encodedId, action, ...more] = rest.split("/");
      let scheduleId: string;
      try {
        scheduleId = decodeURIComponent(encodedId ?? "");
      } catch {
        return sendError(res, new ConnectError(`schedule id "${encodedId}" is not valid URL encoding`, Code.InvalidArgument));
      }
      if (more.length > 0) return sendError(res, new ConnectError(`no route for ${method} ${path}`, Code.NotFound));
      if (action === undefined) {
        if (method === "GET") return call(res, req, GetScheduleResponseSchema, (o) => client.getSchedule({ scheduleId }, o));
        if (method === "DELETE") return call(res, req, DeleteScheduleResponseSchema, (o) => client.deleteSchedule({ scheduleId }, o));
        return sendMethodNotAllowed(res, method, path, "GET, DELETE");
      }
      if (method !== "POST") return sendMethodNotAllowed(res, method, path, "POST");
      if (action === "pause") return call(res, req, PauseScheduleResponseSchema, (o) => client.pauseSchedule({ scheduleId }, o));
      if (action === "unpause") return call(res, req, UnpauseScheduleResponseSchema, (o) => client.unpauseSchedule({ scheduleId }, o));
      if (action === "trigger") return call(res, req, TriggerScheduleResponseSchema, (o) => client.triggerSchedule({ scheduleId }, o));
      return sendError(
        res,
        new ConnectError(
          `no route for ${method} ${path}; schedule routes are GET|POST ${schedulesPath}, GET|DELETE ${schedulesPath}/{id} and POST ${schedulesPath}/{id}/pause|unpause|trigger`,
          Code.NotFound,
        ),
      );
    };
    served().catch((error: unknown) => {
      options.onError?.(error);
      if (!res.headersSent) sendError(res, new ConnectError("internal error (the server logged the cause)", Code.Internal));
      else res.destroy();
    });
  };
}
