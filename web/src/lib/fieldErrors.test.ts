import { describe, expect, it } from 'vitest';
import { fieldOfKey, shortMessage, splitFieldErrors } from './fieldErrors';

describe('fieldOfKey', () => {
  it('names the first segment after the entity', () => {
    expect(fieldOfKey('locations.api.upstream', 'locations', 'api')).toBe('upstream');
    expect(fieldOfKey('upstreams.blue.addrs[1]', 'upstreams', 'blue')).toBe('addrs');
    expect(fieldOfKey('plugins.limit.settings.rate', 'plugins', 'limit')).toBe('settings');
  });
  it('keeps dotted entity names whole', () => {
    expect(fieldOfKey('locations.api.v2.path', 'locations', 'api.v2')).toBe('path');
    expect(fieldOfKey('locations.api.v2.path', 'locations', 'api')).toBe('v2');
  });
  it('is null for other entities and the entity itself', () => {
    expect(fieldOfKey('locations.web.path', 'locations', 'api')).toBeNull();
    expect(fieldOfKey('locations.api', 'locations', 'api')).toBeNull();
    expect(fieldOfKey('', 'locations', 'api')).toBeNull();
  });
});

describe('shortMessage', () => {
  it('drops the file, line and key', () => {
    expect(
      shortMessage(
        'locations.api.upstream',
        '/tmp/pg/config.toml:7: locations.api.upstream: no upstream named "nope"',
      ),
    ).toBe('no upstream named "nope"');
  });
  it('leaves other messages alone', () => {
    expect(shortMessage('locations.api.upstream', 'no upstream named "x"')).toBe('no upstream named "x"');
    expect(shortMessage('', 'pingap.toml:3: expected a table')).toBe('expected a table');
  });
});

describe('splitFieldErrors', () => {
  const errors = [
    { key: 'locations.api.upstream', message: 'f.toml:7: locations.api.upstream: no upstream named "x"' },
    { key: 'locations.api.upstream', message: 'second' },
    { key: 'locations.api.bogus', message: 'unknown field `bogus`' },
    { key: 'servers.web.locations', message: 'no location named "api"' },
    { key: '', message: 'broken document' },
  ];
  it('puts each message on its field', () => {
    const split = splitFieldErrors(errors, 'locations', 'api', ['upstream', 'path'], 'other');
    expect(split.byField).toEqual({
      upstream: ['no upstream named "x"', 'second'],
      other: ['unknown field `bogus`'],
    });
    expect(split.other.map((e) => e.key)).toEqual(['servers.web.locations', '']);
  });
  it('without a fallback, unknown fields go to the list', () => {
    const split = splitFieldErrors(errors, 'locations', 'api', ['upstream']);
    expect(split.other.map((e) => e.key)).toEqual(['locations.api.bogus', 'servers.web.locations', '']);
  });
});
