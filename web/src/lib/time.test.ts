import { describe, expect, it } from 'vitest';
import { relativeTime } from './time';

describe('relativeTime', () => {
  it('reads like a person would say it', () => {
    const now = 1_000_000_000;
    expect(relativeTime(now - 2000, now)).toBe('just now');
    expect(relativeTime(now - 42_000, now)).toBe('42 s ago');
    expect(relativeTime(now - 185_000, now)).toBe('3 min ago');
    expect(relativeTime(now - 7_300_000, now)).toBe('2 h ago');
    expect(relativeTime(now + 3 * 86_400_000, now)).toBe('in 3 d');
  });
});
