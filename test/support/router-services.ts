/**
 * The server's real services (store, worker, WorkflowService, AgentService, the interceptors) without a socket:
 * clients call them through connect-es's router transport, so a test of what a service does needs no port,
 * no HTTP and no protocol. `test/rpc` uses it; tests of transports and protocols start a server instead.
 */
import { type Client, createClient, createRouterTransport } from "@connectrpc/connect";
import { AgentService } from "../../sdk/gen/cairn/v1/agent_pb.js";
import { WorkflowService } from "../../sdk/gen/cairn/v1/workflow_pb.js";
import { type CairnServices, createServices } from "../../server/app.js";
import { testConfig, testLogger, type WorkflowClient } from "./in-process-server.js";

export interface RouterServices {
  readonly services: CairnServices;
  readonly client: WorkflowClient;
  readonly agents: Client<typeof AgentService>;
  close(): Promise<void>;
}

/** `env` as for a server (DATABASE_URL or CAIRN_DATA_DIR, WORKFLOW_DIRS, limits); the worker runs as in a server. */
export async function startRouterServices(env: Record<string, string>): Promise<RouterServices> {
  const config = testConfig(env);
  const services = await createServices(config, testLogger());
  await services.keys?.start(services.database);
  await services.scheduler.start();
  await services.feed.start(services.database);
  const transport = createRouterTransport(services.routes, {
    router: { interceptors: services.interceptors, readMaxBytes: config.maxRequestBytes, shutdownSignal: services.shutdown.signal },
  });
  let closing: Promise<void> | undefined;
  return {
    services,
    client: createClient(WorkflowService, transport),
    agents: createClient(AgentService, transport),
    close() {
      closing ??= (async () => {
        services.shutdown.abort();
        await services.scheduler.stop(config.shutdownGraceMs);
        services.feed.stop();
        await services.keys?.stop();
        await services.database.close();
      })();
      return closing;
    },
  };
}
