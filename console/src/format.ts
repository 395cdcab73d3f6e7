/** How times, durations and enum values read in the console. */
import { EntryKind, RunStatus, WaitKind } from "./api.js";

export function statusName(status: RunStatus): string {
  return (RunStatus[status] ?? "unknown").toLowerCase();
}

export function entryKindName(kind: EntryKind): string {
  return (EntryKind[kind] ?? "unknown").toLowerCase();
}

export function waitKindName(kind: WaitKind): string {
  return (WaitKind[kind] ?? "").toLowerCase();
}

export function duration(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} m ${Math.round((ms % 60_000) / 1000)} s`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} m`;
  return `${Math.floor(ms / 86_400_000)} d ${Math.round((ms % 86_400_000) / 3_600_000)} h`;
}

// Built once: a formatter per call costs more than the whole rest of a runs-table row.
const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const dayAndTime = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

export function time(date: Date | undefined): string {
  if (!date) return "";
  const today = new Date();
  const sameDay = date.getDate() === today.getDate() && date.getMonth() === today.getMonth() && date.getFullYear() === today.getFullYear();
  return (sameDay ? timeOfDay : dayAndTime).format(date);
}

export function ago(date: Date | undefined, now = Date.now()): string {
  return date ? `${duration(now - date.getTime())} ago` : "";
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}
