import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../api/client';
import { matches, NO_FILTER, prepend, statusClassOf, streamQuery, streamUrl, type Line } from './logs';

function rec(status: number, location: string | null, latency_ms: number): LogRecord {
  return {
    time: '2026-11-28T04:17:07.805Z',
    server: 'web',
    location,
    method: 'GET',
    path: '/x',
    status,
    latency_ms,
    bytes_sent: 4,
  };
}

describe('stream query', () => {
  it('leaves out what is not filtered', () => {
    expect(streamQuery(NO_FILTER)).toEqual({});
    expect(streamUrl(NO_FILTER)).toBe('/api/logs/stream');
  });
  it('sends each filter', () => {
    const f = { status: '5xx' as const, location: 'api v2', slowMs: 250.7 };
    expect(streamQuery(f)).toEqual({ status: '5xx', location: 'api v2', slow_ms: 250 });
    expect(streamUrl(f)).toBe('/api/logs/stream?status=5xx&location=api+v2&slow_ms=250');
  });
});

describe('matches', () => {
  it('checks status class, location and latency', () => {
    expect(matches(rec(200, 'api', 1), NO_FILTER)).toBe(true);
    expect(matches(rec(503, 'api', 1), { ...NO_FILTER, status: '5xx' })).toBe(true);
    expect(matches(rec(404, 'api', 1), { ...NO_FILTER, status: '5xx' })).toBe(false);
    expect(matches(rec(200, 'web', 1), { ...NO_FILTER, location: 'api' })).toBe(false);
    expect(matches(rec(200, null, 1), { ...NO_FILTER, location: 'api' })).toBe(false);
    expect(matches(rec(200, 'api', 499), { ...NO_FILTER, slowMs: 500 })).toBe(false);
    expect(matches(rec(200, 'api', 500), { ...NO_FILTER, slowMs: 500 })).toBe(true);
  });
  it('classes statuses', () => {
    expect(statusClassOf(0)).toBe('-');
    expect(statusClassOf(101)).toBe('1xx');
    expect(statusClassOf(599)).toBe('5xx');
  });
});

describe('prepend', () => {
  it('keeps the newest lines first, bounded', () => {
    const line = (id: number): Line => ({ id, record: rec(200, 'api', id) });
    let lines = prepend([], [line(1), line(2)], 3);
    expect(lines.map((l) => l.id)).toEqual([2, 1]);
    lines = prepend(lines, [line(3), line(4)], 3);
    expect(lines.map((l) => l.id)).toEqual([4, 3, 2]);
    expect(prepend(lines, [], 3)).toBe(lines);
  });
});
