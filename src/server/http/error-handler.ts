/**
 * The one place errors become HTTP answers: `{"error":{"code","message","requestId"}}`. Rampart errors
 * keep their code and status; schema failures become RAMPART_INVALID_INPUT; anything unexpected is
 * logged and answered as RAMPART_INTERNAL without its message (which might carry internals).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RampartError, RateLimitedError, type ErrorBody, type ErrorCode } from '../../api/errors.js';

function send(
  reply: FastifyReply,
  request: FastifyRequest,
  status: number,
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
) {
  const body: ErrorBody = {
    error: { code, message, requestId: String(request.id), ...(details ? { details } : {}) },
  };
  return reply.status(status).type('application/json').send(body);
}

/** Answers a request no route matched, instead of the JSON 404 (true when it did): the console's deep links. */
export type NotFoundFallback = (request: FastifyRequest, reply: FastifyReply) => boolean;

export function installErrorHandler(app: FastifyInstance, fallback?: NotFoundFallback): void {
  app.setErrorHandler((error: FastifyError | RampartError | Error, request, reply) => {
    if (error instanceof RampartError) {
      if (error instanceof RateLimitedError) reply.header('retry-after', String(error.retryAfterSeconds));
      if (error.status >= 500) request.log.warn({ code: error.code, err: error.message }, 'request failed');
      return send(reply, request, error.status, error.code, error.message, error.details);
    }
    const fastifyError = error as FastifyError;
    if (fastifyError.validation) {
      const where = fastifyError.validationContext ?? 'request';
      return send(reply, request, 400, 'RAMPART_INVALID_INPUT', `invalid ${where}: ${fastifyError.message}`);
    }
    if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return send(reply, request, 413, 'RAMPART_PAYLOAD_TOO_LARGE', 'request body too large');
    }
    // PostgreSQL (several replicas, READ COMMITTED): two requests that pass the same "does it exist?"
    // check at once are decided by a unique index; the loser gets a conflict, not an internal error.
    // (SQLite serializes writers, so its checks see each other and this never happens there.)
    if ((error as { code?: unknown }).code === '23505') {
      request.log.info({ constraint: (error as { constraint?: unknown }).constraint }, 'unique violation');
      return send(
        reply,
        request,
        409,
        'RAMPART_CONFLICT',
        'conflicts with an existing object (retry to see it)',
      );
    }
    const status = fastifyError.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return send(reply, request, 400, 'RAMPART_INVALID_INPUT', fastifyError.message);
    }
    request.log.error({ err: error }, 'unexpected error');
    return send(reply, request, 500, 'RAMPART_INTERNAL', 'internal error');
  });
  app.setNotFoundHandler((request, reply) => {
    if (fallback?.(request, reply)) return reply;
    return send(
      reply,
      request,
      404,
      'RAMPART_NOT_FOUND',
      `no route ${request.method} ${request.url.split('?')[0]}`,
    );
  });
}
