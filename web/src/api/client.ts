/**
 * The one way pages call the API: the session's bearer token, `?tenant=` for the chosen tenant, JSON
 * in and out, one refresh-and-retry on 401, and errors as ApiError with the server's code and message.
 */
import { getSession, refreshSession } from './session.js';
import type { ErrorBody } from './types.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let tenant: string | null = null;

/** The tenant requests act in (`?tenant=`); null: the server's default (your only tenant). */
export function setTenant(name: string | null): void {
  tenant = name;
}

export function currentTenant(): string | null {
  return tenant;
}

export interface RequestOptions {
  /** Add `?tenant=` (default true). */
  tenant?: boolean;
  query?: Record<string, string | undefined>;
}

export function withQuery(path: string, options: RequestOptions = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(options.query ?? {}))
    if (value !== undefined && value !== '') params.set(key, value);
  if (options.tenant !== false && tenant) params.set('tenant', tenant);
  const query = params.toString();
  return query ? `${path}${path.includes('?') ? '&' : '?'}${query}` : path;
}

async function send(method: string, url: string, body: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  const session = getSession();
  if (session) headers.authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  options?: RequestOptions,
): Promise<T> {
  const url = withQuery(path, options);
  let response = await send(method, url, body);
  if (response.status === 401 && getSession() && (await refreshSession()))
    response = await send(method, url, body);
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  if (!response.ok) {
    const error = (parsed as ErrorBody | null)?.error;
    throw new ApiError(response.status, error?.code ?? 'HTTP', error?.message ?? `HTTP ${response.status}`);
  }
  return parsed as T;
}

export const get = <T>(path: string, options?: RequestOptions) => api<T>('GET', path, undefined, options);
