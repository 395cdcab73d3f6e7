/** A rejected promise already marked handled: the handler decides whether to await it. */
export function rejected(error: unknown): Promise<never> {
  const promise = Promise.reject(error);
  promise.catch(() => undefined);
  return promise;
}

/** "Error: message" reads as "message"; other names stay. */
export function failureText(error: { name: string; message: string }): string {
  return error.name && error.name !== "Error" ? `${error.name}: ${error.message}` : error.message;
}

export function attemptSuffix(attempt: number): string {
  return attempt > 1 ? ` (attempt ${attempt})` : "";
}
