/**
 * Scrapes and parses Prometheus text exposition with parse-prometheus-text-format (a parser ported from the
 * Prometheus Python client), so the tests read /metrics the way a scraper does, not with a regex.
 */
// Its one gap: a histogram WITH labels comes back as one sample of merged buckets, without labels, count or sum;
// tests count such events with the matching counter (cairn_step_attempts_total) and read only bucket bounds.
// @ts-expect-error: the package ships no types; its shape is declared below.
import parseUntyped from "parse-prometheus-text-format";

export interface Sample {
  labels?: Record<string, string>;
  value?: string;
  /** Histograms: cumulative counts by upper bound (`le`), as strings. */
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}
export interface Family {
  name: string;
  help: string;
  type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
  metrics: Sample[];
}

export const parsePrometheusText = parseUntyped as (text: string) => Family[];

export async function scrape(url: string, headers: Record<string, string> = {}): Promise<Map<string, Family>> {
  const response = await fetch(url, { headers });
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  const families = parsePrometheusText(await response.text());
  return new Map(families.map((family) => [family.name, family]));
}

/** The value of the sample of `name` whose labels include `labels` (0 when absent: a counter not yet touched). */
export function valueOf(metrics: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const sample = metrics.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  if (!sample) return 0;
  return Number(sample.value ?? sample.count);
}
