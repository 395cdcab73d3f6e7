/** What an API key may do: admin (everything, keys included), worker (agent turns), client (runs and events). */
export const apiKeyRoles = ["admin", "worker", "client"] as const;
export type ApiKeyRole = (typeof apiKeyRoles)[number];
