/** Health, the OpenAPI document and Prometheus metrics. */
import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../context.js';

export async function metaRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  app.get('/v1/health', { schema: { tags: ['meta'], summary: 'Liveness', security: [] } }, async () => ({
    status: 'ok',
    version: ctx.version,
  }));
  app.get('/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get(
    '/metrics',
    { schema: { tags: ['meta'], summary: 'Prometheus metrics (needs platform:metrics:read)' } },
    async (_request, reply) =>
      reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics()),
  );
}
