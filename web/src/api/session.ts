/**
 * The session as the API intends it: a short-lived bearer token and a single-use refresh token, kept
 * in memory and in sessionStorage (this tab only, survives a reload; never localStorage), refreshed
 * before the token expires, and ended with POST /v1/auth/logout.
 */
import type { SessionTokens } from './types.js';

const KEY = 'rampart.session';
/** Refresh this long before the token expires. */
const REFRESH_MARGIN_MS = 60_000;

export interface StoredSession {
  token: string;
  expiresAt: string;
  refreshToken: string;
  refreshExpiresAt: string;
  restriction: SessionTokens['restriction'];
  username: string;
}

type Listener = (session: StoredSession | null) => void;

let current: StoredSession | null = read();
let timer: ReturnType<typeof setTimeout> | null = null;
const listeners = new Set<Listener>();

function read(): StoredSession | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as StoredSession;
    if (Date.parse(parsed.refreshExpiresAt) <= Date.now()) return null;
    return parsed;
  } catch {
    return null;
  }
}

export function getSession(): StoredSession | null {
  return current;
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function setSession(tokens: SessionTokens | null): void {
  current = tokens
    ? {
        token: tokens.token,
        expiresAt: tokens.expiresAt,
        refreshToken: tokens.refreshToken,
        refreshExpiresAt: tokens.refreshExpiresAt,
        restriction: tokens.restriction,
        username: tokens.user.username,
      }
    : null;
  if (current) sessionStorage.setItem(KEY, JSON.stringify(current));
  else sessionStorage.removeItem(KEY);
  schedule();
  for (const listener of listeners) listener(current);
}

async function post<T>(path: string, body: unknown, token?: string): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
}

let refreshing: Promise<boolean> | null = null;

/** Exchanges the refresh token for a new pair (once at a time); false when the session is over. */
export function refreshSession(): Promise<boolean> {
  if (refreshing) return refreshing;
  const session = current;
  if (!session) return Promise.resolve(false);
  refreshing = (async () => {
    try {
      const answer = await post<SessionTokens>('/v1/auth/refresh', { refreshToken: session.refreshToken });
      if (answer.status !== 200) {
        setSession(null);
        return false;
      }
      setSession(answer.body);
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function schedule(): void {
  if (timer) clearTimeout(timer);
  timer = null;
  if (!current) return;
  const due = Date.parse(current.expiresAt) - Date.now() - REFRESH_MARGIN_MS;
  timer = setTimeout(() => void refreshSession(), Math.max(5_000, Math.min(due, 2 ** 31 - 1)));
}

export interface LoginInput {
  username: string;
  password: string;
  totp?: string;
}

/** POST /v1/auth/login; answers null on success, else the server's message. */
export async function login(input: LoginInput): Promise<string | null> {
  const body: Record<string, string> = { username: input.username, password: input.password };
  if (input.totp) body.totp = input.totp;
  const answer = await post<SessionTokens | { error: { message: string } }>('/v1/auth/login', body);
  if (answer.status === 200) {
    setSession(answer.body as SessionTokens);
    return null;
  }
  return (answer.body as { error?: { message: string } } | null)?.error?.message ?? `HTTP ${answer.status}`;
}

export async function logout(): Promise<void> {
  const session = current;
  setSession(null);
  if (session) await post('/v1/auth/logout', {}, session.token).catch(() => undefined);
}

schedule();
