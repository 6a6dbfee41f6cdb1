/**
 * The web console: the single-page app built by `npm run build` (Vite, web/ -> dist/web/), served at
 * `/` with its hashed assets under `/assets/`. Only files listed once at start-up are ever served, from
 * memory: a request names a key of that map, never a path on disk, so no traversal is possible.
 *
 * Console pages carry a strict Content-Security-Policy (scripts, styles and connections only from this
 * origin; no inline script or style; no framing) and the usual secure headers. Hashed assets are
 * immutable (their name changes with their content); everything else keeps the API's `no-store`.
 * A path that looks like a console route (`/vms/web1`: no extension, not under /v1, /metrics or
 * /assets) answers index.html, so deep links and reloads work; the app's router takes it from there.
 * Without a build the console answers 503 saying so, and the API works as ever.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { NotFoundError } from '../../api/errors.js';

/** dist/web/, seen from this file compiled to dist/src/server/http/web-console.js. */
export const WEB_CONSOLE_DIR = fileURLToPath(new URL('../../../web/', import.meta.url));

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), usb=(), payment=()',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

/** Files larger than this are not loaded (the console is a few hundred KiB). */
const MAX_FILE_BYTES = 8 * 1024 * 1024;
const NOT_BUILT = 'The web console is not built: run `npm run build` (it builds dist/web/), then restart.\n';
/** A console route: letters, digits, `-`, `_`, `/`; no dot (files have extensions), at most 256 chars. */
const SPA_PATH = /^\/[A-Za-z0-9_\-/]{0,255}$/;

interface StaticFile {
  body: Buffer;
  type: string;
}

export class WebConsole {
  private constructor(
    /** URL path (`/index.html`, `/assets/index-3f2a.js`) -> the file, read at start-up. */
    private readonly files: ReadonlyMap<string, StaticFile>,
  ) {}

  /** Reads the built console from `dir` (missing or empty: a console that answers 503). */
  static load(dir: string = WEB_CONSOLE_DIR): WebConsole {
    const files = new Map<string, StaticFile>();
    const walk = (path: string, depth: number): void => {
      if (depth > 4) return;
      for (const entry of readdirSync(path, { withFileTypes: true })) {
        const full = join(path, entry.name);
        if (entry.isDirectory()) walk(full, depth + 1);
        else if (entry.isFile()) {
          const type = TYPES[extname(entry.name)];
          if (!type || statSync(full).size > MAX_FILE_BYTES) continue;
          files.set(`/${relative(dir, full).split(sep).join('/')}`, { body: readFileSync(full), type });
        }
      }
    };
    try {
      walk(dir, 0);
    } catch {
      // not built: an empty map
    }
    return new WebConsole(files.has('/index.html') ? files : new Map());
  }

  get built(): boolean {
    return this.files.has('/index.html');
  }

  /** Answers index.html with the console's security headers (503 text when not built). */
  sendIndex(reply: FastifyReply): FastifyReply {
    const index = this.files.get('/index.html');
    if (!index) return reply.status(503).type('text/plain; charset=utf-8').send(NOT_BUILT);
    return reply.headers(PAGE_HEADERS).type(index.type).send(index.body);
  }

  /** The asset at `/assets/<name>`, or undefined. */
  asset(name: string): StaticFile | undefined {
    return this.files.get(`/assets/${name}`);
  }

  /**
   * For the not-found handler: a GET of a console route (a deep link) answers index.html. True when it
   * answered; API paths, files and anything else are left to the JSON 404.
   */
  serveDeepLink(request: FastifyRequest, reply: FastifyReply): boolean {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false;
    const path = request.url.split('?')[0]!;
    if (!SPA_PATH.test(path)) return false;
    if (/^\/(v1|metrics|assets)(\/|$)/.test(path)) return false;
    // Only a browser navigating (it asks for HTML): an API client's unknown path stays a JSON 404.
    if (!String(request.headers.accept ?? '').includes('text/html')) return false;
    void this.sendIndex(reply);
    return true;
  }
}

/** GET / and GET /assets/*: public (see ROUTE_POLICY), static, hidden from the OpenAPI document. */
export async function webConsoleRoutes(app: FastifyInstance, web: WebConsole): Promise<void> {
  app.get('/', { schema: { hide: true } }, async (_request, reply) => web.sendIndex(reply));
  app.get(
    '/assets/*',
    {
      schema: { hide: true },
      // Route-level onSend runs after the app's (which sets no-store on every answer): hashed names are
      // immutable, so a found asset may be cached for a year.
      onSend: async (_request, reply, payload) => {
        if (reply.statusCode === 200) reply.header('cache-control', 'public, max-age=31536000, immutable');
        return payload;
      },
    },
    async (request, reply) => {
      const name = (request.params as { '*'?: string })['*'] ?? '';
      const file = web.asset(name);
      if (!file) throw new NotFoundError('file');
      return reply.header('cross-origin-resource-policy', 'same-origin').type(file.type).send(file.body);
    },
  );
}
