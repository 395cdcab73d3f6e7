/** Summaries and number formatting shared by the report modules. */
import { mean, percentile, round } from "./stats.js";

export interface Summary {
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Of an ascending array. */
export function summarize(sorted: readonly number[]): Summary {
  return {
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    mean: round(mean(sorted)),
    min: round(sorted[0] ?? Number.NaN),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
}

export function ms(value: number, digits = 1): string {
  return `${value.toFixed(digits)} ms`;
}

/** "p50 / p99 / max ms". */
export function triple(summary: Summary): string {
  return `${summary.p50.toFixed(1)} / ${summary.p99.toFixed(1)} / ${summary.max.toFixed(1)} ms`;
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function signedMib(bytes: number): string {
  return `${bytes >= 0 ? "+" : "−"}${mib(Math.abs(bytes))}`;
}

export function signed(value: number): string {
  return `${value >= 0 ? "+" : "−"}${Math.abs(Math.round(value))}`;
}

export function percent(share: number): string {
  return `${(share * 100).toFixed(0)} %`;
}

/** 12345.6 → "12,346". */
export function thousands(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}
