import { describe, expect, it } from 'vitest';
import { fieldKeys, FormProblem, fromForm, OTHER, summary, toForm } from './entities';

describe('entity forms', () => {
  it('round-trips an entity unchanged', () => {
    const loc = { upstream: 'blue', host: 'a.example.com', priority: 3, plugins: ['rid'], weird: { x: 1 } };
    const values = toForm('locations', loc);
    expect(values.upstream).toBe('blue');
    expect(values.host).toEqual(['a.example.com']);
    expect(values.grpc_web).toBe(false);
    expect(values[OTHER]).toBe('{\n  "weird": {\n    "x": 1\n  }\n}');
    expect(fromForm('locations', values, loc)).toEqual(loc);
  });

  it('writes changed fields and drops emptied ones', () => {
    const loc = { upstream: 'blue', path: '/api', methods: ['GET'] };
    const values = { ...toForm('locations', loc), upstream: ' green ', path: '', host: ['a', 'b'], methods: [] };
    expect(fromForm('locations', values, loc)).toEqual({ upstream: 'green', host: ['a', 'b'] });
  });

  it('writes a single host as a string', () => {
    const values = { ...toForm('locations', {}), host: ['api.example.com'] };
    expect(fromForm('locations', values, {})).toEqual({ host: 'api.example.com' });
  });

  it('leaves untouched booleans absent and writes changed ones', () => {
    const values = toForm('upstreams', { addrs: ['127.0.0.1:1'] });
    expect(values.verify_cert).toBe(true);
    expect(fromForm('upstreams', values, { addrs: ['127.0.0.1:1'] })).toEqual({ addrs: ['127.0.0.1:1'] });
    expect(fromForm('upstreams', { ...values, verify_cert: false }, {})).toEqual({ addrs: ['127.0.0.1:1'], verify_cert: false });
  });

  it('keeps secrets and odd types that were not touched', () => {
    const cert = { tls_cert: 'c.pem', tls_key: '***' };
    expect(fromForm('certificates', toForm('certificates', cert), cert)).toEqual(cert);
    const server = { addr: '0.0.0.0:80', max_connections: '100' };
    expect(fromForm('servers', toForm('servers', server), server)).toEqual(server);
    expect(fromForm('servers', { ...toForm('servers', server), max_connections: 5 }, server)).toEqual({
      addr: '0.0.0.0:80',
      max_connections: 5,
    });
  });

  it('merges the other settings and names the field of a mistake', () => {
    const plugin = { type: 'rate_limit', rate: 10 };
    const values = toForm('plugins', plugin);
    expect(values[OTHER]).toBe('{\n  "rate": 10\n}');
    expect(fromForm('plugins', { ...values, [OTHER]: '{"rate": 20, "burst": 5}' }, plugin)).toEqual({
      type: 'rate_limit',
      rate: 20,
      burst: 5,
    });
    expect(() => fromForm('plugins', { ...values, [OTHER]: '{"rate": ' }, plugin)).toThrow(FormProblem);
    try {
      fromForm('plugins', { ...values, [OTHER]: '[1]' }, plugin);
    } catch (e) {
      expect(e instanceof FormProblem && e.field).toBe(OTHER);
    }
    expect(() => fromForm('servers', { ...toForm('servers', {}), threads: 'x' }, {})).toThrow(/number/);
  });

  it('summarises entities', () => {
    expect(summary('locations', { upstream: 'blue' })).toBe('everything → blue');
    expect(summary('locations', { host: ['a', 'b'], path: '/x' })).toBe('a, b /x → no upstream');
    expect(summary('servers', { addr: ':443', tls: true })).toBe(':443 (HTTPS)');
    expect(fieldKeys('plugins')).toEqual(['type', 'priority']);
  });
});
