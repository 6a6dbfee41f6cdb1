/**
 * A small typed client for the Rampart REST API over Node's global fetch. It sends the bearer token
 * (a fixed API token, or the stored session's, refreshed and retried once on 401), adds `?tenant=`,
 * never follows redirects (a redirect could carry the token elsewhere), turns error answers into
 * `ApiError` and transport failures into `UnreachableError`.
 */
import type { Flavor, FlavorCreate } from '../api/flavor.js';
import type { Host } from '../api/host.js';
import type { Image, ImageSignature } from '../api/image.js';
import type { TrustPolicy, TrustPolicyUpdate, TrustedKey } from '../api/trust.js';
import type { DsseEnvelope } from '../common/dsse.js';
import type { Quota, QuotaUpdate } from '../api/quota.js';
import type { ConsoleTail, Vm, VmAction, VmCreate, VmStopBody } from '../api/vm.js';
import type { AuditPage, AuditPublicKey, AuditVerification } from '../api/audit.js';
import type {
  ApiToken,
  ApiTokenCreate,
  ApiTokenCreated,
  LoginRequest,
  Member,
  RecoveryCodes,
  Role,
  RoleCreate,
  SessionTokens,
  Tenant,
  TenantCreate,
  TotpEnrolment,
  User,
  UserCreate,
  WhoAmI,
} from '../api/iam.js';
import type { Static } from 'typebox';
import { StaticToken, type Authenticator } from './credentials.js';
import { ApiError, GeneralError, UnreachableError, UsageError } from './errors.js';

export const DEFAULT_URL = 'http://127.0.0.1:8480';
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface List<T> {
  items: T[];
}

export type MemberView = Static<typeof Member>;
export type TotpEnrolmentView = Static<typeof TotpEnrolment>;
export type RecoveryCodesView = Static<typeof RecoveryCodes>;
export type ApiTokenCreatedView = Static<typeof ApiTokenCreated>;
export type AuditPageView = Static<typeof AuditPage>;
export type AuditPublicKeyView = Static<typeof AuditPublicKey>;
export type UserCreateBody = Static<typeof UserCreate>;
export type TenantCreateBody = Static<typeof TenantCreate>;
export type RoleCreateBody = Static<typeof RoleCreate>;
export type ApiTokenCreateBody = Static<typeof ApiTokenCreate>;

/** The filters of GET /v1/audit (and /v1/platform/audit), as query strings. */
export interface AuditListQuery {
  actor?: string;
  action?: string;
  outcome?: string;
  since?: string;
  until?: string;
  after?: string;
  limit?: string;
}

export interface ApiClientOptions {
  baseUrl: string;
  /** A fixed API token; ignored when `auth` is given. */
  token?: string;
  /** Where the credentials come from (a stored session that refreshes itself). */
  auth?: Authenticator;
  /** Sent as `?tenant=` with every request that belongs to a tenant. */
  tenant?: string;
  timeoutMs?: number;
  userAgent?: string;
}

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | undefined>;
  /**
   * Add the client's `?tenant=` (the default). False for requests that belong to no tenant (the
   * caller's session, users, platform roles) or that name their tenant in the path.
   */
  tenant?: boolean;
  /** Send no credentials (login, refresh). */
  anonymous?: boolean;
  /** Overrides the client's request timeout (long server-side work such as an image import). */
  timeoutMs?: number;
}

interface RawAnswer {
  status: number;
  statusText: string;
  text: string;
  requestId: string | undefined;
  retryAfter: string | undefined;
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
  readonly tenant: string | undefined;
  readonly #auth: Authenticator;
  readonly #timeoutMs: number;
  readonly #userAgent: string;

  constructor(options: ApiClientOptions) {
    this.baseUrl = parseBaseUrl(options.baseUrl);
    this.#auth =
      options.auth ?? new StaticToken(options.token === undefined ? undefined : checkToken(options.token));
    this.tenant = options.tenant;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#userAgent = options.userAgent ?? 'rampart-cli';
  }

  /** The URL of an API path (`/v1/...`), below the base URL's own path. Undefined values are left out. */
  url(path: string, query?: Record<string, string | undefined>): URL {
    const url = new URL(path.replace(/^\//, ''), this.baseUrl);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, value);
    }
    return url;
  }

  /** The WebSocket URL of an API path: ws:// for http, wss:// for https. */
  wsUrl(path: string): URL {
    const url = this.url(path);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url;
  }

  /** The Authorization header for a connection the client does not make itself (the console stream). */
  async authHeaders(): Promise<Record<string, string>> {
    const token = await this.#auth.token();
    return token === undefined ? {} : { authorization: `Bearer ${checkToken(token)}` };
  }

  /** A JSON request; the parsed answer, or undefined for an empty one (204). */
  async request<T>(method: Method, path: string, options: RequestOptions = {}): Promise<T> {
    const { status, text } = await this.#send(method, path, options, 'application/json');
    if (text.length === 0) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new GeneralError(`the server answered HTTP ${status} with a body that is not JSON`);
    }
  }

  /** A GET whose answer is text as it is (e.g. JSON lines of an export), not parsed. */
  async getText(path: string, options: Omit<RequestOptions, 'body'> = {}): Promise<string> {
    const { text } = await this.#send(
      'GET',
      path,
      options,
      'application/x-ndjson, text/plain;q=0.9, */*;q=0.1',
    );
    return text;
  }

  /**
   * Sends a request with the current credentials. A 401 to a request that carried credentials gives
   * the authenticator one chance to renew them (a session refreshes), and the request is sent once more.
   */
  async #send(method: Method, path: string, options: RequestOptions, accept: string): Promise<RawAnswer> {
    const query =
      options.tenant === false || this.tenant === undefined
        ? options.query
        : { tenant: this.tenant, ...options.query };
    const url = this.url(path, query);
    const sent = options.anonymous ? undefined : await this.#auth.token();
    let answer = await this.#fetch(method, url, options.body, accept, sent, options.timeoutMs);
    let final = sent;
    if (answer.status === 401 && sent !== undefined && (await this.#auth.renew(sent))) {
      final = await this.#auth.token();
      answer = await this.#fetch(method, url, options.body, accept, final, options.timeoutMs);
    }
    const { status } = answer;
    if (status >= 300 && status < 400) {
      throw new GeneralError(
        `the server answered with a redirect (HTTP ${status}); check the server URL (--url)`,
      );
    }
    if (status >= 400) {
      const err = parseErrorBody(status, answer.statusText, answer.text, answer.requestId);
      let hint: string | undefined;
      if (status === 401 && final === undefined && !options.anonymous) hint = this.#auth.missingHint?.();
      if (status === 429) {
        const seconds = err.details?.retryAfterSeconds;
        const after = answer.retryAfter ?? (typeof seconds === 'number' ? String(seconds) : undefined);
        if (after) hint = /^[0-9]+$/.test(after) ? `retry in ${after} s` : `retry after ${after}`;
      }
      if (hint === undefined) throw err;
      throw new ApiError(err.status, err.code, `${err.message}; ${hint}`, err.requestId, err.details);
    }
    return answer;
  }

  async #fetch(
    method: Method,
    url: URL,
    body: unknown,
    accept: string,
    token: string | undefined,
    timeoutMs = this.#timeoutMs,
  ): Promise<RawAnswer> {
    const headers: Record<string, string> = { accept, 'user-agent': this.#userAgent };
    if (token !== undefined) headers.authorization = `Bearer ${checkToken(token)}`;
    const init: RequestInit = {
      method,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    };
    // Actions without a body send none at all: no body and no content-type.
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    try {
      const res = await fetch(url, init);
      return {
        status: res.status,
        statusText: res.statusText,
        requestId: res.headers.get('x-request-id') ?? undefined,
        retryAfter: res.headers.get('retry-after') ?? undefined,
        text: await res.text(),
      };
    } catch (err) {
      throw new UnreachableError(
        `cannot reach the Rampart server at ${this.baseUrl.origin}: ${describeTransportError(err)}`,
      );
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

  /** Gives a stopped VM another flavor. */
  resizeVm(ref: string, flavor: string): Promise<Vm> {
    return this.request('POST', `/v1/vms/${seg(ref)}/resize`, { body: { flavor } });
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

  listImageSignatures(ref: string): Promise<List<ImageSignature>> {
    return this.request('GET', `/v1/images/${seg(ref)}/signatures`);
  }

  /** Attaches a DSSE envelope; the server checks it against the image and the tenant's trusted keys. */
  attachImageSignature(ref: string, envelope: DsseEnvelope): Promise<ImageSignature> {
    return this.request('POST', `/v1/images/${seg(ref)}/signatures`, { body: { envelope } });
  }

  deleteImageSignature(ref: string, id: string): Promise<void> {
    return this.request('DELETE', `/v1/images/${seg(ref)}/signatures/${seg(id)}`);
  }

  // ---- image trust: trusted keys and the trust policy

  listTrustedKeys(): Promise<List<TrustedKey>> {
    return this.request('GET', '/v1/trusted-keys');
  }

  addTrustedKey(name: string, publicKeyPem: string): Promise<TrustedKey> {
    return this.request('POST', '/v1/trusted-keys', { body: { name, publicKeyPem } });
  }

  deleteTrustedKey(id: string): Promise<void> {
    return this.request('DELETE', `/v1/trusted-keys/${seg(id)}`);
  }

  getTrustPolicy(tenant: string): Promise<TrustPolicy> {
    return this.request('GET', `/v1/tenants/${seg(tenant)}/trust-policy`, { tenant: false });
  }

  updateTrustPolicy(tenant: string, body: TrustPolicyUpdate): Promise<TrustPolicy> {
    return this.request('PUT', `/v1/tenants/${seg(tenant)}/trust-policy`, { body, tenant: false });
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

  // ---- the caller's session (no tenant: a session is the user's, in every tenant)

  login(body: LoginRequest): Promise<SessionTokens> {
    return this.request('POST', '/v1/auth/login', { body, anonymous: true, tenant: false });
  }

  refreshSession(refreshToken: string): Promise<SessionTokens> {
    return this.request('POST', '/v1/auth/refresh', {
      body: { refreshToken },
      anonymous: true,
      tenant: false,
    });
  }

  logout(): Promise<void> {
    return this.request('POST', '/v1/auth/logout', { tenant: false });
  }

  /** Who the caller is, and what it may do in the request's tenant. */
  whoami(): Promise<WhoAmI> {
    return this.request('GET', '/v1/auth/whoami');
  }

  changePassword(currentPassword: string, newPassword: string): Promise<SessionTokens> {
    return this.request('POST', '/v1/auth/password', {
      body: { currentPassword, newPassword },
      tenant: false,
    });
  }

  enrolTotp(): Promise<TotpEnrolmentView> {
    return this.request('POST', '/v1/auth/mfa/totp', { tenant: false });
  }

  verifyTotp(code: string): Promise<RecoveryCodesView> {
    return this.request('POST', '/v1/auth/mfa/totp/verify', { body: { code }, tenant: false });
  }

  disableTotp(password: string, code: string): Promise<void> {
    return this.request('POST', '/v1/auth/mfa/totp/disable', { body: { password, code }, tenant: false });
  }

  // ---- the caller's API tokens

  listTokens(): Promise<List<ApiToken>> {
    return this.request('GET', '/v1/tokens');
  }

  createToken(body: ApiTokenCreateBody): Promise<ApiTokenCreatedView> {
    return this.request('POST', '/v1/tokens', { body });
  }

  revokeToken(id: string): Promise<void> {
    return this.request('DELETE', `/v1/tokens/${seg(id)}`);
  }

  // ---- tenants and their members (the tenant is in the path)

  listTenants(): Promise<List<Tenant>> {
    return this.request('GET', '/v1/tenants', { tenant: false });
  }

  getTenant(ref: string): Promise<Tenant> {
    return this.request('GET', `/v1/tenants/${seg(ref)}`, { tenant: false });
  }

  createTenant(body: TenantCreateBody): Promise<Tenant> {
    return this.request('POST', '/v1/tenants', { body, tenant: false });
  }

  updateTenant(
    ref: string,
    body: { requireMfaForAdmins?: boolean; allowNestedVirtualization?: boolean; dedicatedHosts?: boolean },
  ): Promise<Tenant> {
    return this.request('PATCH', `/v1/tenants/${seg(ref)}`, { body, tenant: false });
  }

  deleteTenant(ref: string): Promise<void> {
    return this.request('DELETE', `/v1/tenants/${seg(ref)}`, { tenant: false });
  }

  getQuota(tenant: string): Promise<Quota> {
    return this.request('GET', `/v1/tenants/${seg(tenant)}/quota`, { tenant: false });
  }

  /** A partial update (null: back to the platform default); `force` accepts limits below usage. */
  updateQuota(tenant: string, body: QuotaUpdate, force = false): Promise<Quota> {
    return this.request('PUT', `/v1/tenants/${seg(tenant)}/quota`, {
      body,
      query: force ? { force: 'true' } : undefined,
      tenant: false,
    });
  }

  listMembers(tenant: string): Promise<List<MemberView>> {
    return this.request('GET', `/v1/tenants/${seg(tenant)}/members`, { tenant: false });
  }

  addMember(tenant: string, user: string, role: string): Promise<MemberView> {
    return this.request('POST', `/v1/tenants/${seg(tenant)}/members`, {
      body: { user, role },
      tenant: false,
    });
  }

  removeMember(tenant: string, user: string, role?: string): Promise<void> {
    return this.request('DELETE', `/v1/tenants/${seg(tenant)}/members/${seg(user)}`, {
      query: { role },
      tenant: false,
    });
  }

  // ---- platform-wide role bindings and users (no tenant)

  listPlatformMembers(): Promise<List<MemberView>> {
    return this.request('GET', '/v1/platform/members', { tenant: false });
  }

  addPlatformMember(user: string, role: string): Promise<MemberView> {
    return this.request('POST', '/v1/platform/members', { body: { user, role }, tenant: false });
  }

  removePlatformMember(user: string, role?: string): Promise<void> {
    return this.request('DELETE', `/v1/platform/members/${seg(user)}`, { query: { role }, tenant: false });
  }

  listUsers(): Promise<List<User>> {
    return this.request('GET', '/v1/users', { tenant: false });
  }

  getUser(ref: string): Promise<User> {
    return this.request('GET', `/v1/users/${seg(ref)}`, { tenant: false });
  }

  createUser(body: UserCreateBody): Promise<User> {
    return this.request('POST', '/v1/users', { body, tenant: false });
  }

  updateUser(ref: string, body: { disabled?: boolean }): Promise<User> {
    return this.request('PATCH', `/v1/users/${seg(ref)}`, { body, tenant: false });
  }

  resetUserPassword(ref: string, password: string): Promise<void> {
    return this.request('POST', `/v1/users/${seg(ref)}/password`, { body: { password }, tenant: false });
  }

  deleteUser(ref: string): Promise<void> {
    return this.request('DELETE', `/v1/users/${seg(ref)}`, { tenant: false });
  }

  // ---- roles (in the request's tenant)

  listRoles(): Promise<List<Role>> {
    return this.request('GET', '/v1/roles');
  }

  getRole(name: string): Promise<Role> {
    return this.request('GET', `/v1/roles/${seg(name)}`);
  }

  createRole(body: RoleCreateBody): Promise<Role> {
    return this.request('POST', '/v1/roles', { body });
  }

  deleteRole(name: string): Promise<void> {
    return this.request('DELETE', `/v1/roles/${seg(name)}`);
  }

  // ---- audit log

  /**
   * One page of audit records: the request tenant's, or with `platform` every tenant's (there
   * `?tenant=` filters by tenant).
   */
  listAudit(query: AuditListQuery, platform = false): Promise<AuditPageView> {
    const path = platform ? '/v1/platform/audit' : '/v1/audit';
    return this.request('GET', path, { query: { ...query } });
  }

  verifyAudit(): Promise<AuditVerification> {
    return this.request('GET', '/v1/audit/verify');
  }

  auditPublicKey(): Promise<AuditPublicKeyView> {
    return this.request('GET', '/v1/audit/public-key');
  }

  /** records.jsonl: one canonical JSON line per record. */
  exportAuditRecords(): Promise<string> {
    return this.getText('/v1/audit/export/records');
  }

  /** checkpoints.jsonl: one JSON line per signed checkpoint. */
  exportAuditCheckpoints(): Promise<string> {
    return this.getText('/v1/audit/export/checkpoints');
  }
}
