import type { IncomingHttpHeaders } from "node:http";

/** Node's request headers as web Headers, as connect-node's nodeHeaderToWebHeader converts them (pseudo-headers left out). */
export function webHeaders(headers: IncomingHttpHeaders): Headers {
  const result = new Headers();
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* ":" */) continue;
    const value = headers[name];
    if (typeof value === "string") result.append(name, value);
    else if (Array.isArray(value)) for (const item of value) result.append(name, item);
    else if (typeof value === "number") result.append(name, String(value));
  }
  return result;
}
