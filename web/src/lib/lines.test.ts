import { describe, expect, it } from 'vitest';
import { lineOf, lineRange } from './lines';

describe('lines', () => {
  it('reads the line of a message', () => {
    expect(lineOf('/tmp/pg/config.toml:7: locations.api.upstream: no upstream named "x"')).toBe(7);
    expect(lineOf('pingap.toml:12:5: expected `=`')).toBe(12);
    expect(lineOf('no upstream named "x"')).toBeNull();
    expect(lineOf('a: b:3: c')).toBeNull();
  });
  it('finds the range of a line', () => {
    const text = 'a = 1\nbb = 2\n\nc = 3';
    expect(lineRange(text, 1)).toEqual([0, 5]);
    expect(lineRange(text, 2)).toEqual([6, 12]);
    expect(lineRange(text, 3)).toEqual([13, 13]);
    expect(lineRange(text, 4)).toEqual([14, 19]);
    expect(lineRange(text, 9)).toEqual([19, 19]);
  });
});
