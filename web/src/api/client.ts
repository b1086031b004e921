// The admin API client: typed by `schema.d.ts`, which `npm run gen:api` generates from the
// admin API's OpenAPI document (web/openapi.json). Nothing here describes an endpoint by hand.
import createClient, { type Middleware } from 'openapi-fetch';
import type { components, paths } from './schema';
import { connection } from '../lib/connection';

export type Schemas = components['schemas'];
export type Kind = Schemas['Kind'];
export type PlanView = Schemas['PlanView'];
export type WriteResult = Schemas['WriteResult'];
export type WriteAnswer = Schemas['WriteAnswer'];
export type ErrorBody = Schemas['ErrorBody'];
export type FieldError = Schemas['FieldError'];
export type StatsFrame = Schemas['StatsFrame'];
export type SeriesStats = Schemas['SeriesStats'];
export type WindowStats = Schemas['WindowStats'];
export type LogRecord = Schemas['LogRecord'];
export type Dropped = Schemas['Dropped'];
export type VersionSummary = Schemas['VersionSummary'];
export type CertificateSummary = Schemas['CertificateSummary'];
export type UpstreamView = Schemas['UpstreamView'];
export type BackendView = Schemas['BackendView'];
export type Report = Schemas['Report'];
export type Status = Schemas['Status'];
export type SessionView = Schemas['SessionView'];
export type EntityItem = Schemas['EntityItem'];

export const KINDS: readonly Kind[] = ['servers', 'locations', 'upstreams', 'plugins', 'certificates'];

/** Paths whose 401 means "not signed in" rather than "the session ended". */
const SIGN_IN_PATHS = new Set(['/api/login']);

/**
 * A gateway's answer rather than the API's: a proxy in front of pingap (or the dev server's)
 * answers 502 or 504 when pingap does not, and a non-JSON 503.
 */
export function isGatewayFailure(status: number, contentType: string | null): boolean {
  if (status === 502 || status === 504) return true;
  return status === 503 && !(contentType ?? '').includes('json');
}

const watch: Middleware = {
  onResponse({ response, schemaPath }) {
    if (isGatewayFailure(response.status, response.headers.get('Content-Type'))) {
      connection.unreachable();
      return undefined;
    }
    connection.reachable();
    if (response.status === 401 && !SIGN_IN_PATHS.has(schemaPath)) connection.unauthorized();
    return undefined;
  },
  onError({ error }) {
    if (!(error instanceof DOMException && error.name === 'AbortError')) connection.unreachable();
    return undefined;
  },
};

export const api = createClient<paths>({ baseUrl: '', credentials: 'same-origin' });
api.use(watch);

/** A failed call: the HTTP status (0 when the API could not be reached) and the error body. */
export class ApiError extends Error {
  readonly status: number;
  readonly errors: FieldError[];

  constructor(status: number, message: string, errors: FieldError[] = []) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.errors = errors;
  }

  static fromBody(status: number, body: unknown): ApiError {
    if (isErrorBody(body)) return new ApiError(status, body.error, body.errors ?? []);
    return new ApiError(status, `the API answered ${status}`);
  }
}

export function isErrorBody(body: unknown): body is ErrorBody {
  return (
    typeof body === 'object' &&
    body !== null &&
    typeof (body as { error?: unknown }).error === 'string'
  );
}

interface Result<D> {
  data?: D;
  error?: unknown;
  response: Response;
}

/**
 * The data of a call, or an {@link ApiError}: status 0 when the API was unreachable, else the
 * status with the API's error message and per-key errors.
 */
export async function unwrap<D>(call: Promise<Result<D>>): Promise<{ data: D; response: Response }> {
  let result: Result<D>;
  try {
    result = await call;
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The API is unreachable.');
  }
  if (!result.response.ok) throw ApiError.fromBody(result.response.status, result.error);
  return { data: result.data as D, response: result.response };
}

/** The same, for the data alone. */
export async function get<D>(call: Promise<Result<D>>): Promise<D> {
  return (await unwrap(call)).data;
}

/** Bodies of the TOML endpoints go as they are. */
export const tomlBody = {
  bodySerializer: (body: string) => body,
  headers: { 'Content-Type': 'application/toml' },
} as const;

/** Whether a write answer is a plan (dry run) rather than what was done. */
export function isPlan(answer: WriteAnswer): answer is PlanView {
  return 'text' in answer && 'upgrade' in answer;
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
