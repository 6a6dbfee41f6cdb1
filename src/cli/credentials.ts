/**
 * The credentials a request carries. An explicit API token (--token, RAMPART_TOKEN) wins; otherwise the
 * stored login session is used, but only when it was made for the same server URL. A session is
 * refreshed through POST /v1/auth/refresh (the refresh token is single use, so both tokens rotate) when
 * its token expires within 30 s, or when a request is answered 401; the rotated tokens are stored at once.
 */
import type { SessionTokens } from '../api/iam.js';
import { ApiError, AuthError } from './errors.js';
import { readSession, sessionFromTokens, writeSession, type StoredSession } from './session.js';

/** Refresh a session whose token expires within this many milliseconds. */
export const REFRESH_MARGIN_MS = 30_000;

/** What the API client asks for the bearer token of each request. */
export interface Authenticator {
  /** The token for the next request, or undefined to send none (a session refreshes first if needed). */
  token(): Promise<string | undefined>;
  /**
   * The server answered 401 to a request sent with `rejected`. Returns true when there are new
   * credentials to retry the request once with, false when there is nothing better to offer.
   */
  renew(rejected: string): Promise<boolean>;
  /** What to tell the user when a request without credentials was answered 401. */
  missingHint?(): string | undefined;
}

export const LOGIN_HINT = 'log in with `rampart login`, or set RAMPART_TOKEN';

/** A fixed API token (or none): nothing to renew. */
export class StaticToken implements Authenticator {
  constructor(private readonly value: string | undefined) {}
  async token(): Promise<string | undefined> {
    return this.value;
  }
  async renew(): Promise<boolean> {
    return false;
  }
  missingHint(): string | undefined {
    return this.value === undefined ? LOGIN_HINT : undefined;
  }
}

export interface SessionAuthOptions {
  /** The effective server URL, normalised; a stored session for another URL is not used. */
  url: string;
  /** The session file. */
  path: string;
  now: () => number;
  /** POST /v1/auth/refresh, without credentials. */
  refresh(refreshToken: string): Promise<SessionTokens>;
  /** Learns every token of the session, so that error output can mask them. */
  onSecret(secret: string): void;
  /** Called once when a usable session was loaded (e.g. to warn about plain HTTP). */
  onLoad?(session: StoredSession): void;
}

function expired(session: StoredSession): AuthError {
  return new AuthError(
    `the session of ${session.username} has expired or was revoked; log in again with \`rampart login\``,
  );
}

/** The stored login session as an Authenticator; the file is read on first use only. */
export class SessionAuth implements Authenticator {
  #loaded = false;
  #session: StoredSession | undefined;
  #otherUrl: string | undefined;
  #refreshing: Promise<void> | undefined;

  constructor(private readonly options: SessionAuthOptions) {}

  /** The stored session for this server, if there is one (reads the file on first use). */
  current(): StoredSession | undefined {
    if (!this.#loaded) {
      const stored = readSession(this.options.path);
      this.#loaded = true;
      if (stored && stored.url === this.options.url) this.#adopt(stored);
      else this.#otherUrl = stored?.url;
      if (this.#session) this.options.onLoad?.(this.#session);
    }
    return this.#session;
  }

  /** The URL of a stored session that is not used because it is for another server. */
  get otherUrl(): string | undefined {
    this.current();
    return this.#otherUrl;
  }

  async token(): Promise<string | undefined> {
    const session = this.current();
    if (!session) return undefined;
    const expiresAt = Date.parse(session.expiresAt);
    if (!(expiresAt - this.options.now() > REFRESH_MARGIN_MS)) await this.#refresh(session.token);
    return this.#session?.token;
  }

  async renew(rejected: string): Promise<boolean> {
    if (!this.current()) return false;
    await this.#refresh(rejected);
    return true;
  }

  missingHint(): string {
    const other = this.otherUrl;
    return other === undefined
      ? LOGIN_HINT
      : `the stored session is for ${other}, not ${this.options.url}; log in here with \`rampart login\` or pass --url`;
  }

  #adopt(session: StoredSession): void {
    this.#session = session;
    this.options.onSecret(session.token);
    this.options.onSecret(session.refreshToken);
  }

  /** Refreshes once for all requests that saw the same token; a no-op if it was renewed since. */
  #refresh(rejected: string): Promise<void> {
    if (this.#session?.token !== rejected) return Promise.resolve();
    this.#refreshing ??= this.#doRefresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #doRefresh(): Promise<void> {
    const session = this.#session;
    if (!session) return;
    if (!(Date.parse(session.refreshExpiresAt) > this.options.now())) {
      if (this.#adoptNewerFromFile(session)) return;
      throw expired(session);
    }
    let tokens: SessionTokens;
    try {
      tokens = await this.options.refresh(session.refreshToken);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        // Another rampart process may have used the refresh token a moment ago: take what it stored.
        if (this.#adoptNewerFromFile(session)) return;
        throw expired(session);
      }
      throw err;
    }
    const next = sessionFromTokens(this.options.url, tokens);
    this.#adopt(next);
    writeSession(this.options.path, next);
  }

  #adoptNewerFromFile(session: StoredSession): boolean {
    let stored: StoredSession | undefined;
    try {
      stored = readSession(this.options.path);
    } catch {
      return false;
    }
    if (!stored || stored.url !== this.options.url || stored.refreshToken === session.refreshToken)
      return false;
    this.#adopt(stored);
    return true;
  }
}
