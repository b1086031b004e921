// How close a certificate is to its end.

export const WARN_DAYS = 14;

export type ExpiryLevel = 'expired' | 'soon' | 'ok';

/** Whole days left (negative once expired), from Unix seconds. */
export function daysLeft(notAfter: number, nowMs: number): number {
  return Math.floor((notAfter * 1000 - nowMs) / 86_400_000);
}

export function expiryLevel(notAfter: number, nowMs: number): ExpiryLevel {
  if (notAfter * 1000 <= nowMs) return 'expired';
  if (notAfter * 1000 - nowMs < WARN_DAYS * 86_400_000) return 'soon';
  return 'ok';
}

export function expiryColor(level: ExpiryLevel): string {
  return level === 'expired' ? 'red' : level === 'soon' ? 'orange' : 'green';
}

export function expiryText(notAfter: number, nowMs: number): string {
  const days = daysLeft(notAfter, nowMs);
  if (notAfter * 1000 <= nowMs) return `expired ${-days - 1 === 0 ? 'today' : `${-days - 1} d ago`}`;
  if (days === 0) return 'expires today';
  return `${days} d left`;
}

/** The ACME state of a certificate, as /api/certificates sends it (the document types it only as an object). */
export interface AcmeStatus {
  directory?: string;
  challenge?: string;
  domains?: string[];
  last_order?: string | null;
  last_order_at?: string | null;
  valid_until?: string | null;
  next_renewal_at?: string | null;
  failures?: number;
  last_error?: string | null;
}

export function asAcmeStatus(v: unknown): AcmeStatus | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  return v;
}
