import { describe, expect, it } from 'vitest';
import { ApiError, isGatewayFailure, isPlan } from './client';

describe('client helpers', () => {
  it('tells a gateway failure from an API answer', () => {
    expect(isGatewayFailure(502, 'text/html')).toBe(true);
    expect(isGatewayFailure(504, null)).toBe(true);
    expect(isGatewayFailure(503, 'text/plain')).toBe(true);
    expect(isGatewayFailure(503, 'application/json')).toBe(false);
    expect(isGatewayFailure(422, 'application/json')).toBe(false);
    expect(isGatewayFailure(401, 'application/json')).toBe(false);
  });
  it('reads error bodies', () => {
    const e = ApiError.fromBody(422, { error: 'bad', errors: [{ key: 'locations.a.upstream', message: 'no' }] });
    expect(e.message).toBe('bad');
    expect(e.errors).toHaveLength(1);
    expect(ApiError.fromBody(500, 'oops').message).toBe('the API answered 500');
  });
  it('tells a plan from a result', () => {
    expect(isPlan({ upgrade: [], text: '', changes: { entries: [], new_warnings: [] } })).toBe(true);
    expect(isPlan({ outcome: 'swapped', changes: { entries: [], new_warnings: [] } })).toBe(false);
  });
});
