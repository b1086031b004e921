// The forms of the Configuration page: which keys of each kind of entity get a field of their
// own, and the conversion between an entity as the API sends it (JSON of its TOML table) and
// the values of a form. Keys without a field are edited as JSON in one "other settings" box,
// so nothing the form does not know is lost. The OpenAPI document types entities only as
// objects, so these field lists follow the configuration reference in the README.
import type { Kind } from '../api/client';

export type FieldType = 'text' | 'textarea' | 'list' | 'number' | 'bool' | 'select' | 'ref' | 'refs';

export interface FieldSpec {
  key: string;
  label: string;
  type: FieldType;
  description?: string;
  /** For `ref` and `refs`: the kind whose names are offered. */
  ref?: Kind;
  /** For `select`. */
  options?: readonly string[];
  placeholder?: string;
  required?: boolean;
  /** For `bool`: the value when the key is absent. */
  default?: boolean;
  /** For `list`: a single item is written as a string (e.g. a location's `host`). */
  oneOrMany?: boolean;
  /** Shown under "More settings", folded by default. */
  more?: boolean;
}

/** The form field holding the keys that have no field of their own, as JSON. */
export const OTHER = '__other';

const headerList = (key: string, label: string, description: string): FieldSpec => ({
  key,
  label,
  type: 'list',
  description,
  placeholder: 'Name: value',
  more: true,
});

export const FIELDS: Record<Kind, readonly FieldSpec[]> = {
  servers: [
    { key: 'addr', label: 'Listen address', type: 'text', required: true, placeholder: '0.0.0.0:80', description: 'ip:port, or [ipv6]:port' },
    { key: 'locations', label: 'Locations', type: 'refs', ref: 'locations', description: 'The locations served, by name' },
    { key: 'tls', label: 'HTTPS', type: 'bool', default: false, description: 'Serve the certificates of [certificates], chosen by SNI' },
    { key: 'tls_cert', label: 'Own certificate', type: 'text', description: 'PEM file or inline PEM (turns HTTPS on)' },
    { key: 'tls_key', label: 'Own certificate key', type: 'text' },
    { key: 'h2c', label: 'HTTP/2 without TLS (h2c)', type: 'bool', default: false, more: true },
    { key: 'health_path', label: 'Health path', type: 'text', placeholder: '/healthz', more: true },
    { key: 'access_log', label: 'Access log', type: 'text', placeholder: 'logs/access.log or stdout' },
    { key: 'access_log_format', label: 'Access log format', type: 'text', placeholder: 'combined', more: true },
    { key: 'max_connections', label: 'Max connections', type: 'number', more: true },
    { key: 'threads', label: 'Threads', type: 'number', more: true },
  ],
  locations: [
    { key: 'upstream', label: 'Upstream', type: 'ref', ref: 'upstreams', description: 'Where requests go' },
    { key: 'host', label: 'Hosts', type: 'list', oneOrMany: true, placeholder: 'api.example.com, *.example.com, ~regex', description: 'Any host when empty' },
    { key: 'path', label: 'Path', type: 'text', placeholder: '/api, =/exact or ~regex', description: 'A prefix, =exact or ~regex (every path when empty)' },
    { key: 'methods', label: 'Methods', type: 'list', placeholder: 'GET' },
    { key: 'headers', label: 'Header conditions', type: 'list', placeholder: 'X-Env: canary' },
    { key: 'query', label: 'Query conditions', type: 'list', placeholder: 'version=2' },
    { key: 'priority', label: 'Priority', type: 'number', description: 'Higher is tried first' },
    { key: 'plugins', label: 'Plugins', type: 'refs', ref: 'plugins' },
    { key: 'rewrite', label: 'Rewrite', type: 'text', placeholder: '/ or ^/api/(?<rest>.*)$ /v2/$rest' },
    { key: 'client_max_body_size', label: 'Max request body', type: 'text', placeholder: '8MB', more: true },
    headerList('headers_add', 'Add request headers', 'Sent upstream'),
    headerList('headers_set', 'Set request headers', 'Sent upstream'),
    { key: 'headers_remove', label: 'Remove request headers', type: 'list', placeholder: 'Name', more: true },
    headerList('response_headers_add', 'Add response headers', 'Sent to the client'),
    headerList('response_headers_set', 'Set response headers', 'Sent to the client'),
    { key: 'response_headers_remove', label: 'Remove response headers', type: 'list', placeholder: 'Name', more: true },
    { key: 'grpc_web', label: 'Bridge gRPC-web', type: 'bool', default: false, more: true },
  ],
  upstreams: [
    { key: 'addrs', label: 'Addresses', type: 'list', required: true, placeholder: 'host:port [weight]', description: '"host:port" or "host:port weight"' },
    {
      key: 'algorithm',
      label: 'Algorithm',
      type: 'select',
      options: ['round_robin', 'weighted_round_robin', 'least_connections', 'ip_hash', 'consistent_hash'],
      placeholder: 'round_robin',
    },
    { key: 'hash_key', label: 'Hash key', type: 'text', placeholder: 'ip, uri, header:NAME…', more: true },
    { key: 'health_check', label: 'Health check', type: 'text', placeholder: 'http://host/healthz or tcp://' },
    { key: 'retries', label: 'Retries', type: 'number' },
    { key: 'connection_timeout', label: 'Connection timeout', type: 'text', placeholder: '10s', more: true },
    { key: 'read_timeout', label: 'Read timeout', type: 'text', placeholder: '60s', more: true },
    { key: 'write_timeout', label: 'Write timeout', type: 'text', placeholder: '60s', more: true },
    { key: 'idle_timeout', label: 'Idle timeout', type: 'text', placeholder: '60s', more: true },
    { key: 'circuit_breaker_failures', label: 'Circuit breaker failures', type: 'number', more: true },
    { key: 'protocol', label: 'Protocol', type: 'select', options: ['http1', 'h2', 'auto'], placeholder: 'http1', more: true },
    { key: 'sni', label: 'SNI', type: 'text', more: true },
    { key: 'verify_cert', label: 'Verify certificates', type: 'bool', default: true, more: true },
  ],
  plugins: [
    {
      key: 'type',
      label: 'Type',
      type: 'select',
      required: true,
      options: [
        'request_id', 'cors', 'redirect', 'ip_restriction', 'referer', 'user_agent', 'jwt', 'api_key',
        'basic_auth', 'request_size', 'csrf', 'rate_limit', 'concurrency', 'rewrite', 'headers',
        'compression', 'mock', 'cache',
      ],
    },
    { key: 'priority', label: 'Priority', type: 'number', description: "Overrides the type's default" },
  ],
  certificates: [
    { key: 'domains', label: 'Domains', type: 'list', placeholder: 'example.com' },
    { key: 'tls_cert', label: 'Certificate', type: 'textarea', description: 'PEM file path or inline PEM, leaf first' },
    { key: 'tls_key', label: 'Key', type: 'textarea' },
    { key: 'is_default', label: 'Default certificate', type: 'bool', default: false },
    { key: 'acme', label: 'ACME directory', type: 'text', placeholder: 'letsencrypt-staging' },
    { key: 'acme_email', label: 'ACME contact', type: 'text' },
    { key: 'acme_challenge', label: 'ACME challenge', type: 'select', options: ['http-01', 'tls-alpn-01'], more: true },
  ],
};

export type FormValue = string | string[] | boolean | number;
export type FormValues = Record<string, FormValue>;
export type Entity = Record<string, unknown>;

/** The value a field shows for an entity's raw value. */
export function toFieldValue(spec: FieldSpec, raw: unknown): FormValue {
  switch (spec.type) {
    case 'bool':
      return typeof raw === 'boolean' ? raw : (spec.default ?? false);
    case 'number':
      return typeof raw === 'number' ? raw : typeof raw === 'string' ? raw : '';
    case 'list':
    case 'refs':
      if (Array.isArray(raw)) return raw.map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
      return typeof raw === 'string' ? [raw] : [];
    default:
      if (raw === undefined || raw === null) return '';
      return typeof raw === 'string' ? raw : JSON.stringify(raw);
  }
}

export function toForm(kind: Kind, entity: Entity): FormValues {
  const values: FormValues = {};
  const known = new Set<string>();
  for (const spec of FIELDS[kind]) {
    known.add(spec.key);
    values[spec.key] = toFieldValue(spec, entity[spec.key]);
  }
  const rest = Object.fromEntries(Object.entries(entity).filter(([k]) => !known.has(k)));
  values[OTHER] = Object.keys(rest).length === 0 ? '' : JSON.stringify(rest, null, 2);
  return values;
}

function same(a: FormValue, b: FormValue): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => v === b[i]);
  return a === b;
}

export class FormProblem extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The entity a form describes. A field left as the original showed it keeps the original
 * value exactly (a number stays a number, a secret stays "***"); an emptied field removes its
 * key; the "other settings" JSON must be an object. Throws a FormProblem naming the field.
 */
export function fromForm(kind: Kind, values: FormValues, original: Entity = {}): Entity {
  const out: Entity = {};
  const otherText = values[OTHER];
  if (typeof otherText === 'string' && otherText.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(otherText);
    } catch (e) {
      throw new FormProblem(OTHER, `not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new FormProblem(OTHER, 'must be a JSON object of keys and values');
    }
    Object.assign(out, parsed);
  }
  for (const spec of FIELDS[kind]) {
    const value = values[spec.key] ?? toFieldValue(spec, undefined);
    const had = Object.prototype.hasOwnProperty.call(original, spec.key);
    if (same(value, toFieldValue(spec, original[spec.key]))) {
      if (had) out[spec.key] = original[spec.key];
      else Reflect.deleteProperty(out, spec.key);
      continue;
    }
    const converted = convert(spec, value);
    if (converted === undefined) Reflect.deleteProperty(out, spec.key);
    else out[spec.key] = converted;
  }
  return out;
}

function convert(spec: FieldSpec, value: FormValue): unknown {
  switch (spec.type) {
    case 'bool':
      return Boolean(value);
    case 'number': {
      if (value === '') return undefined;
      const n = typeof value === 'number' ? value : Number(value);
      if (!Number.isFinite(n)) throw new FormProblem(spec.key, 'must be a number');
      return n;
    }
    case 'list':
    case 'refs': {
      const items = (Array.isArray(value) ? value : [String(value)]).map((v) => v.trim()).filter((v) => v !== '');
      if (items.length === 0) return undefined;
      return spec.oneOrMany === true && items.length === 1 ? items[0] : items;
    }
    default: {
      const s = typeof value === 'string' ? value.trim() : String(value);
      return s === '' ? undefined : s;
    }
  }
}

/** Field keys of a kind, for mapping API errors onto them. */
export function fieldKeys(kind: Kind): string[] {
  return FIELDS[kind].map((f) => f.key);
}

/** A one-line description of an entity for the list beside the form. */
export function summary(kind: Kind, e: Entity): string {
  const str = (v: unknown): string => (Array.isArray(v) ? v.join(', ') : typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v));
  switch (kind) {
    case 'servers':
      return `${str(e.addr)}${e.tls === true || e.tls_cert !== undefined ? ' (HTTPS)' : ''}`;
    case 'locations': {
      const where = [str(e.host), str(e.path)].filter((s) => s !== '').join(' ') || 'everything';
      return `${where} → ${str(e.upstream) || 'no upstream'}`;
    }
    case 'upstreams':
      return str(e.addrs);
    case 'plugins':
      return str(e.type);
    case 'certificates':
      return str(e.domains) || (e.acme !== undefined ? `ACME ${str(e.acme)}` : str(e.tls_cert).slice(0, 40));
  }
}
