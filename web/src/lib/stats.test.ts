import { describe, expect, it } from 'vitest';
import type { SeriesStats, StatsFrame } from '../api/client';
import { appendFrame, chartData, formatMs, formatRate, formatRatio, seriesNames, totalRequests } from './stats';

function win(requests: number, p50: number | null = null) {
  return {
    requests,
    requests_per_second: requests,
    p50_ms: p50,
    p95_ms: p50,
    p99_ms: p50,
    ratio_4xx: 0,
    ratio_5xx: 0,
  };
}
function series(name: string, requests: number, p50: number | null = null): SeriesStats {
  return { name, last_second: win(requests, p50), last_minute: win(requests * 2, p50) };
}
function frame(time: number, loc: SeriesStats[] = [], ups: SeriesStats[] = []): StatsFrame {
  return { time, locations: loc, upstreams: ups };
}

describe('appendFrame', () => {
  it('appends newer frames and replaces one for the same second', () => {
    let f = appendFrame([], frame(10, [series('a', 1)]));
    f = appendFrame(f, frame(11, [series('a', 2)]));
    f = appendFrame(f, frame(11, [series('a', 3)]));
    expect(f.map((x) => x.time)).toEqual([10, 11]);
    expect(f[1]?.locations[0]?.last_second.requests).toBe(3);
  });
  it('ignores frames older than the newest', () => {
    const f = appendFrame([frame(10), frame(11)], frame(5));
    expect(f.map((x) => x.time)).toEqual([10, 11]);
  });
  it('keeps only the window, by time not by count', () => {
    let f: StatsFrame[] = [];
    for (let t = 0; t < 1000; t++) f = appendFrame(f, frame(t));
    expect(f.length).toBe(900);
    expect(f[0]?.time).toBe(100);
    // a gap: a frame 2 minutes later drops those more than 15 minutes older than it
    f = appendFrame(f, frame(1119));
    expect(f[0]?.time).toBe(220);
    const small = appendFrame([frame(1), frame(2), frame(3)], frame(4), 2);
    expect(small.map((x) => x.time)).toEqual([3, 4]);
  });
});

describe('chartData', () => {
  it('aligns every second, with gaps and seconds without requests as null', () => {
    const frames = [
      frame(100, [series('a', 5, 2.5), series('b', 0)]),
      frame(101, [series('a', 0)]),
      frame(103, [series('a', 7, 4), series('b', 1, 1)]),
    ];
    const data = chartData(frames, 'locations', [
      { name: 'a', metric: 'requests_per_second' },
      { name: 'a', metric: 'p50_ms' },
      { name: 'b', metric: 'p99_ms' },
    ]);
    expect(data[0]).toEqual([100, 101, 102, 103]);
    expect(data[1]).toEqual([5, 0, null, 7]);
    expect(data[2]).toEqual([2.5, null, null, 4]);
    expect(data[3]).toEqual([null, null, null, 1]);
  });
  it('reads the minute window when asked', () => {
    const data = chartData([frame(1, [], [series('u', 3)])], 'upstreams', [{ name: 'u', metric: 'requests_per_second' }], 'last_minute');
    expect(data[1]).toEqual([6]);
  });
  it('is empty without frames', () => {
    expect(chartData([], 'locations', [{ name: 'a', metric: 'p50_ms' }])).toEqual([[], []]);
  });
});

describe('names and totals', () => {
  it('collects names over the window', () => {
    const frames = [frame(1, [series('b', 1)]), frame(2, [series('a', 1)])];
    expect(seriesNames(frames, 'locations')).toEqual(['a', 'b']);
    expect(totalRequests(frames[1], 'locations', 'last_minute')).toBe(2);
    expect(totalRequests(undefined, 'locations', 'last_second')).toBe(0);
  });
});

describe('formatting', () => {
  it('formats latencies', () => {
    expect(formatMs(null)).toBe('—');
    expect(formatMs(0.42)).toBe('420 µs');
    expect(formatMs(3.648)).toBe('3.65 ms');
    expect(formatMs(123.45)).toBe('123.5 ms');
    expect(formatMs(2500)).toBe('2.50 s');
  });
  it('formats ratios without hiding small ones', () => {
    expect(formatRatio(0)).toBe('0 %');
    expect(formatRatio(0.0004)).toBe('<0.1 %');
    expect(formatRatio(0.0123)).toBe('1.2 %');
    expect(formatRatio(0.5)).toBe('50 %');
  });
  it('formats rates', () => {
    expect(formatRate(0)).toBe('0');
    expect(formatRate(0.0909)).toBe('0.09');
    expect(formatRate(15)).toBe('15.0');
    expect(formatRate(12345.6)).toBe('12,346');
  });
});
