/** Bearer-token authentication for every API route except the public ones (health, OpenAPI). */
import type { FastifyInstance } from 'fastify';
import { UnauthenticatedError } from '../../api/errors.js';
import type { TokenVerifier } from '../auth/bootstrap-token.js';

const PUBLIC_ROUTES = new Set(['/v1/health', '/v1/openapi.json']);

export function installAuthHook(app: FastifyInstance, tokens: TokenVerifier): void {
  app.addHook('onRequest', async (request) => {
    const route = request.routeOptions.url;
    if (route !== undefined && PUBLIC_ROUTES.has(route)) return;
    if (route === undefined) return; // unknown route: answered 404 by the not-found handler
    const header = request.headers.authorization ?? '';
    const match = /^Bearer ([\x21-\x7e]+)$/.exec(header);
    if (!match || !tokens.verify(match[1]!))
      throw new UnauthenticatedError('missing or invalid bearer token');
  });
}
