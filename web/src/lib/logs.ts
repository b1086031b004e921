// The live log tail: the filters (sent to /api/logs/stream so the server filters, and applied
// again to the lines already shown when they change), and the bounded buffer of lines.
import type { LogRecord } from '../api/client';

export const STATUS_CLASSES = ['2xx', '3xx', '4xx', '5xx'] as const;
export type StatusClass = (typeof STATUS_CLASSES)[number];

export interface LogFilter {
  /** A status class, or null for every status. */
  status: StatusClass | null;
  /** A location name, or null for all. */
  location: string | null;
  /** Only requests that took at least this long, or null. */
  slowMs: number | null;
}

export const NO_FILTER: LogFilter = { status: null, location: null, slowMs: null };

/** The query of /api/logs/stream for a filter. */
export function streamQuery(f: LogFilter): { status?: string; location?: string; slow_ms?: number } {
  const q: { status?: string; location?: string; slow_ms?: number } = {};
  if (f.status !== null) q.status = f.status;
  if (f.location !== null && f.location !== '') q.location = f.location;
  if (f.slowMs !== null && f.slowMs > 0) q.slow_ms = Math.floor(f.slowMs);
  return q;
}

/** The URL of the stream for a filter (EventSource takes a URL, not a client call). */
export function streamUrl(f: LogFilter): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(streamQuery(f))) params.set(k, String(v));
  const qs = params.toString();
  return qs === '' ? '/api/logs/stream' : `/api/logs/stream?${qs}`;
}

/** `2xx` for 200…299; `-` when no status was sent (0). */
export function statusClassOf(status: number): string {
  if (status < 100 || status > 599) return '-';
  return `${Math.floor(status / 100)}xx`;
}

export function matches(r: LogRecord, f: LogFilter): boolean {
  if (f.status !== null && statusClassOf(r.status) !== f.status) return false;
  if (f.location !== null && f.location !== '' && r.location !== f.location) return false;
  if (f.slowMs !== null && f.slowMs > 0 && r.latency_ms < f.slowMs) return false;
  return true;
}

/** A line of the tail: the record and a key that stays the same while it is shown. */
export interface Line {
  id: number;
  record: LogRecord;
}

/** Newest first, at most `cap` lines. */
export function prepend(lines: readonly Line[], added: readonly Line[], cap: number): Line[] {
  if (added.length === 0) return lines as Line[];
  const newestFirst = [...added].reverse();
  return [...newestFirst, ...lines].slice(0, cap);
}

/** The colour a status is shown in. */
export function statusColor(status: number): string {
  if (status >= 500 || status === 0) return 'red';
  if (status >= 400) return 'orange';
  if (status >= 300) return 'blue';
  return 'green';
}
