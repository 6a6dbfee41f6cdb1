/**
 * A small typed client for the Rampart REST API over Node's global fetch. It sends the bearer token,
 * never follows redirects (a redirect could carry the token elsewhere), turns error answers into
 * `ApiError` and transport failures into `UnreachableError`.
 */
import type { Flavor, FlavorCreate } from '../api/flavor.js';
import type { Host } from '../api/host.js';
import type { Image } from '../api/image.js';
import type { ConsoleTail, Vm, VmAction, VmCreate, VmStopBody } from '../api/vm.js';
import { ApiError, GeneralError, UnreachableError, UsageError } from './errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:8480';
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface List<T> {
  items: T[];
}

export interface ApiClientOptions {
  baseUrl: string;
  token?: string;
  timeoutMs?: number;
  userAgent?: string;
}

type Method = 'GET' | 'POST' | 'DELETE';

interface RequestOptions {
  body?: unknown;
  query?: Record<string, string>;
}

/** Checks and normalises a base URL: http(s), no credentials, query or fragment. */
export function parseBaseUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`invalid server URL ${JSON.stringify(value)} (expected e.g. ${DEFAULT_URL})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(
      `invalid server URL: the scheme must be http or https, not ${url.protocol.slice(0, -1)}`,
    );
  }
  if (url.username || url.password) {
    throw new UsageError('invalid server URL: do not put credentials in the URL; use RAMPART_TOKEN');
  }
  if (url.search || url.hash) {
    throw new UsageError('invalid server URL: it must not have a query or a fragment');
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/** A token goes into an HTTP header: printable ASCII without spaces. The message never echoes it. */
export function checkToken(token: string): string {
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new UsageError('invalid API token: it must be printable ASCII without spaces or line breaks');
  }
  return token;
}

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function seg(ref: string): string {
  return encodeURIComponent(ref);
}

function describeTransportError(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return 'the request timed out';
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return typeof code === 'string' && !cause.message.includes(code)
        ? `${cause.message} (${code})`
        : cause.message;
    }
    return err.message;
  }
  return String(err);
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/** Builds the ApiError for an error answer from its status and raw body text. */
export function parseErrorBody(
  status: number,
  statusText: string,
  text: string,
  requestIdHeader?: string,
): ApiError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const error = asRecord(asRecord(parsed)?.error);
  if (error && typeof error.code === 'string' && typeof error.message === 'string') {
    const requestId = typeof error.requestId === 'string' ? error.requestId : requestIdHeader;
    return new ApiError(status, error.code, error.message, requestId, asRecord(error.details));
  }
  const reason = statusText ? `${status} ${statusText}` : String(status);
  return new ApiError(status, `HTTP_${status}`, `the server answered HTTP ${reason}`, requestIdHeader);
}

export class ApiClient {
  readonly baseUrl: URL;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;
  readonly #userAgent: string;

  constructor(options: ApiClientOptions) {
    this.baseUrl = parseBaseUrl(options.baseUrl);
    this.#token = options.token === undefined ? undefined : checkToken(options.token);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#userAgent = options.userAgent ?? 'rampart-cli';
  }

  /** The URL of an API path (`/v1/...`), below the base URL's own path. */
  url(path: string, query?: Record<string, string>): URL {
    const url = new URL(path.replace(/^\//, ''), this.baseUrl);
    for (const [key, value] of Object.entries(query ?? {})) url.searchParams.set(key, value);
    return url;
  }

  /** The WebSocket URL of an API path: ws:// for http, wss:// for https. */
  wsUrl(path: string): URL {
    const url = this.url(path);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url;
  }

  authHeaders(): Record<string, string> {
    return this.#token === undefined ? {} : { authorization: `Bearer ${this.#token}` };
  }

  async request<T>(method: Method, path: string, options: RequestOptions = {}): Promise<T> {
    const url = this.url(path, options.query);
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': this.#userAgent,
      ...this.authHeaders(),
    };
    const init: RequestInit = {
      method,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(this.#timeoutMs),
    };
    // Actions without a body send none at all: no body and no content-type.
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    }
    let status: number;
    let statusText: string;
    let text: string;
    let requestIdHeader: string | undefined;
    try {
      const res = await fetch(url, init);
      status = res.status;
      statusText = res.statusText;
      requestIdHeader = res.headers.get('x-request-id') ?? undefined;
      text = await res.text();
    } catch (err) {
      throw new UnreachableError(
        `cannot reach the Rampart server at ${this.baseUrl.origin}: ${describeTransportError(err)}`,
      );
    }
    if (status >= 300 && status < 400) {
      throw new GeneralError(
        `the server answered with a redirect (HTTP ${status}); check the server URL (--url)`,
      );
    }
    if (status >= 400) throw parseErrorBody(status, statusText, text, requestIdHeader);
    if (text.length === 0) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new GeneralError(`the server answered HTTP ${status} with a body that is not JSON`);
    }
  }

  // ---- VMs

  listVms(): Promise<List<Vm>> {
    return this.request('GET', '/v1/vms');
  }

  getVm(ref: string): Promise<Vm> {
    return this.request('GET', `/v1/vms/${seg(ref)}`);
  }

  createVm(body: VmCreate): Promise<Vm> {
    return this.request('POST', '/v1/vms', { body });
  }

  deleteVm(ref: string): Promise<Vm> {
    return this.request('DELETE', `/v1/vms/${seg(ref)}`);
  }

  /** start, reboot, pause, resume: no body. */
  vmAction(ref: string, action: Exclude<VmAction, 'stop'>): Promise<Vm> {
    return this.request('POST', `/v1/vms/${seg(ref)}/${action}`);
  }

  stopVm(ref: string, body: VmStopBody): Promise<Vm> {
    return this.request('POST', `/v1/vms/${seg(ref)}/stop`, { body });
  }

  consoleTail(ref: string, bytes?: number): Promise<ConsoleTail> {
    const query = bytes === undefined ? undefined : { bytes: String(bytes) };
    return this.request('GET', `/v1/vms/${seg(ref)}/console`, { query });
  }

  consoleStreamUrl(ref: string): URL {
    return this.wsUrl(`/v1/vms/${seg(ref)}/console/stream`);
  }

  // ---- images, flavors, hosts

  listImages(): Promise<List<Image>> {
    return this.request('GET', '/v1/images');
  }

  getImage(ref: string): Promise<Image> {
    return this.request('GET', `/v1/images/${seg(ref)}`);
  }

  listFlavors(): Promise<List<Flavor>> {
    return this.request('GET', '/v1/flavors');
  }

  getFlavor(ref: string): Promise<Flavor> {
    return this.request('GET', `/v1/flavors/${seg(ref)}`);
  }

  createFlavor(body: FlavorCreate): Promise<Flavor> {
    return this.request('POST', '/v1/flavors', { body });
  }

  listHosts(): Promise<List<Host>> {
    return this.request('GET', '/v1/hosts');
  }

  getHost(id: string): Promise<Host> {
    return this.request('GET', `/v1/hosts/${seg(id)}`);
  }
}
