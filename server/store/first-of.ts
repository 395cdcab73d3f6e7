/** The row of the first of `ids` (in their order) that has one: waits are tried in the order the workflow started them. */
export function firstOf<R extends { id: string }>(rows: readonly R[], ids: readonly string[]): R | undefined {
  const byId = new Map(rows.map((row) => [row.id, row]));
  for (const id of ids) {
    const row = byId.get(id);
    if (row) return row;
  }
  return undefined;
}
