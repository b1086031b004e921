import { describe, expect, it } from 'vitest';
import { asAcmeStatus, daysLeft, expiryColor, expiryLevel, expiryText } from './certs';

const now = Date.UTC(2026, 10, 28, 12, 0, 0);
const day = 86_400;
const nowS = now / 1000;

describe('expiry', () => {
  it('warns under 14 days', () => {
    expect(expiryLevel(nowS + 90 * day, now)).toBe('ok');
    expect(expiryLevel(nowS + 14 * day, now)).toBe('ok');
    expect(expiryLevel(nowS + 14 * day - 1, now)).toBe('soon');
    expect(expiryLevel(nowS + 60, now)).toBe('soon');
    expect(expiryLevel(nowS, now)).toBe('expired');
    expect(expiryColor('soon')).toBe('orange');
    expect(expiryColor('expired')).toBe('red');
  });
  it('counts days', () => {
    expect(daysLeft(nowS + 30 * day + 5, now)).toBe(30);
    expect(expiryText(nowS + 30 * day + 5, now)).toBe('30 d left');
    expect(expiryText(nowS + 3600, now)).toBe('expires today');
    expect(expiryText(nowS - 3600, now)).toBe('expired today');
    expect(expiryText(nowS - 3 * day - 10, now)).toBe('expired 3 d ago');
  });
  it('reads the ACME object loosely', () => {
    expect(asAcmeStatus(null)).toBeNull();
    expect(asAcmeStatus([1])).toBeNull();
    expect(asAcmeStatus({ failures: 2 })?.failures).toBe(2);
  });
});
