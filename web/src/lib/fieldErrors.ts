// The admin API names each error of an invalid configuration by its dotted key
// (`locations.api.upstream`, `upstreams.blue.addrs[1]`, `plugins.limit.rate`). A form shows an
// error on the field its key names; the rest (other entities, the whole document) goes in a
// list above the form.
import type { FieldError } from '../api/client';

export interface SplitErrors {
  /** Messages per field of the form, in the API's order. */
  byField: Record<string, string[]>;
  /** Errors the form has no field for. */
  other: FieldError[];
}

/**
 * The field a key names within the entity `${kind}.${name}`: the first segment after the
 * entity's prefix (`upstream` of `locations.api.upstream`, `addrs` of `upstreams.a.addrs[1]`),
 * or null when the key is about another entity or the entity as a whole. Entity names may hold
 * dots, so the prefix is matched as a whole rather than split.
 */
export function fieldOfKey(key: string, kind: string, name: string): string | null {
  const prefix = `${kind}.${name}.`;
  if (!key.startsWith(prefix)) return null;
  const rest = key.slice(prefix.length);
  const field = /^[^.[]+/.exec(rest)?.[0];
  return field ?? null;
}

/**
 * Splits errors between the fields a form has (`fields`) and the rest. Keys of the entity
 * whose field the form lacks go to `fallbackField` when given (e.g. an "other settings" box).
 */
export function splitFieldErrors(
  errors: readonly FieldError[],
  kind: string,
  name: string,
  fields: readonly string[],
  fallbackField?: string,
): SplitErrors {
  const known = new Set(fields);
  const byField: Record<string, string[]> = {};
  const other: FieldError[] = [];
  for (const e of errors) {
    const field = fieldOfKey(e.key, kind, name);
    const target = field !== null && known.has(field) ? field : field !== null ? fallbackField : undefined;
    if (target === undefined) {
      other.push(e);
    } else {
      (byField[target] ??= []).push(shortMessage(e.key, e.message));
    }
  }
  return { byField, other };
}

/**
 * The message without what the field already says: the `file:line:` it starts with and the
 * key (`/etc/pingap.toml:12: locations.api.upstream: no upstream named "x"` becomes
 * `no upstream named "x"`). The line is kept in the title of the full message by the caller.
 */
export function shortMessage(key: string, message: string): string {
  let m = message;
  const located = /^[^\s]*?:\d+(?::\d+)?:\s+/.exec(m);
  if (located) m = m.slice(located[0].length);
  if (key !== '' && m.startsWith(`${key}: `)) m = m.slice(key.length + 2);
  return m;
}
