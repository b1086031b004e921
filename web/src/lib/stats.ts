// The live statistics kept in the page: one StatsFrame a second from /api/stats/stream, the
// last 15 minutes of them, and what the charts and tables show of them.
import type { SeriesStats, StatsFrame, WindowStats } from '../api/client';

/** How much history the page keeps: 15 minutes of one frame a second. */
export const KEEP_SECONDS = 15 * 60;

export type Group = 'locations' | 'upstreams';
export type Window = 'last_second' | 'last_minute';
export type Metric = 'requests_per_second' | 'p50_ms' | 'p95_ms' | 'p99_ms' | 'ratio_4xx' | 'ratio_5xx';

/**
 * Adds a frame to the kept ones (oldest first) and returns the new list: a frame for a second
 * already kept replaces it, one older than the newest is dropped (a reconnect may replay), and
 * frames older than `keep` seconds before the newest are forgotten.
 */
export function appendFrame(
  frames: readonly StatsFrame[],
  frame: StatsFrame,
  keep: number = KEEP_SECONDS,
): StatsFrame[] {
  const last = frames.at(-1);
  let next: StatsFrame[];
  if (last === undefined || frame.time > last.time) {
    next = [...frames, frame];
  } else if (frame.time === last.time) {
    next = [...frames.slice(0, -1), frame];
  } else {
    return frames as StatsFrame[];
  }
  const oldest = frame.time - keep + 1;
  let start = 0;
  while (start < next.length && (next[start]?.time ?? oldest) < oldest) start++;
  return start === 0 ? next : next.slice(start);
}

/** The names of a group seen in the kept frames, sorted, the newest frame's first. */
export function seriesNames(frames: readonly StatsFrame[], group: Group): string[] {
  const names = new Set<string>();
  for (const f of frames) for (const s of f[group]) names.add(s.name);
  return [...names].sort();
}

export function findSeries(frame: StatsFrame | undefined, group: Group, name: string): SeriesStats | undefined {
  return frame?.[group].find((s) => s.name === name);
}

export type AlignedData = [number[], ...(number | null)[][]];

/**
 * uPlot's aligned data for some metrics of some series: x is every second from the oldest kept
 * frame to the newest (a missing second, e.g. while reconnecting, is a gap: null), one y array
 * per (series, metric) pair in the order given. Latencies of seconds without requests are null.
 */
export function chartData(
  frames: readonly StatsFrame[],
  group: Group,
  lines: readonly { name: string; metric: Metric }[],
  window: Window = 'last_second',
): AlignedData {
  const first = frames[0];
  const last = frames.at(-1);
  if (first === undefined || last === undefined) return [[], ...lines.map(() => [])];
  const length = last.time - first.time + 1;
  const xs = Array.from({ length }, (_, i) => first.time + i);
  const ys = lines.map(() => new Array<number | null>(length).fill(null));
  for (const frame of frames) {
    const i = frame.time - first.time;
    lines.forEach((line, j) => {
      const s = findSeries(frame, group, line.name);
      const y = ys[j];
      if (s !== undefined && y !== undefined) y[i] = s[window][line.metric] ?? null;
    });
  }
  return [xs, ...ys];
}

/** Requests counted in a window, for the "total" figures. */
export function totalRequests(frame: StatsFrame | undefined, group: Group, window: Window): number {
  return frame?.[group].reduce((n, s) => n + s[window].requests, 0) ?? 0;
}

export function pick(s: SeriesStats, window: Window): WindowStats {
  return s[window];
}

/** A latency in milliseconds for people: `—` without requests, µs, ms or s as fits. */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** A ratio (0 to 1) as a percentage; a nonzero ratio never shows as 0. */
export function formatRatio(r: number): string {
  if (r <= 0) return '0 %';
  const pct = r * 100;
  if (pct < 0.1) return '<0.1 %';
  return `${pct < 10 ? pct.toFixed(1) : pct.toFixed(0)} %`;
}

export function formatRate(perSecond: number): string {
  if (perSecond === 0) return '0';
  if (perSecond < 10) return perSecond.toFixed(2);
  if (perSecond < 1000) return perSecond.toFixed(1);
  return Math.round(perSecond).toLocaleString('en-US');
}
