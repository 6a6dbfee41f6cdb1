/**
 * Remote hosts: `POST /v1/platform/hosts/join-tokens` (a one-time token, shown once),
 * `POST /v1/hosts/join` (public: the token is the credential; rate-limited, failures back off like
 * logins, audited), `POST /v1/platform/hosts/{host}/certificate` (renewed now over the host's link) and
 * `POST /v1/platform/hosts/{host}/revoke` (the certificate is refused from now on and the host's
 * connection is closed at once).
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema } from '../../../api/common.js';
import {
  HostCertificateRenewed,
  HostJoinRequest,
  HostJoined,
  HostRevoked,
  JoinTokenCreate,
  JoinTokenCreated,
} from '../../../api/host.js';
import { requirePrincipal } from '../access-control.js';
import type { AppContext } from '../context.js';

const errors = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  409: ErrorSchema,
  429: ErrorSchema,
};

export async function remoteHostRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.post(
    '/v1/platform/hosts/join-tokens',
    {
      schema: {
        tags: ['hosts'],
        summary:
          'Create a one-time join token for a remote host (shown once; stored only as a hash; expires)',
        body: JoinTokenCreate,
        response: { 201: JoinTokenCreated, ...errors },
      },
    },
    async (request, reply) => {
      const principal = requirePrincipal(request);
      const created = await ctx.enrollment.createJoinToken({
        hostname: request.body.name,
        ttlSeconds: request.body.ttlSeconds,
        createdBy: principal.userId,
      });
      request.auditInfo!.target = created.id;
      request.auditInfo!.detail = `join token for ${created.hostname ?? 'any host name'}, expires ${created.expiresAt}`;
      return reply.status(201).send(created);
    },
  );

  app.post(
    '/v1/hosts/join',
    {
      schema: {
        tags: ['hosts'],
        summary: 'Join a remote host: consume a join token and have its CSR signed into a host certificate',
        security: [],
        body: HostJoinRequest,
        response: { 200: HostJoined, ...errors },
      },
    },
    async (request) => {
      const joined = await ctx.enrollment.join(request.body, request.ip);
      request.auditInfo!.target = joined.hostId;
      request.auditInfo!.detail = `host ${joined.hostname} joined`;
      return joined;
    },
  );

  app.post(
    '/v1/platform/hosts/:host/certificate',
    {
      schema: {
        tags: ['hosts'],
        summary:
          "Renew a connected remote host's certificate now: a new key made on the host, signed by the host CA; the older certificates are revoked once the host uses the new one",
        params: Type.Object(
          { host: Type.String({ minLength: 1, maxLength: 63 }) },
          { additionalProperties: false },
        ),
        response: { 200: HostCertificateRenewed, ...errors },
      },
    },
    async (request) => {
      request.auditInfo!.target = request.params.host;
      const renewed = await ctx.enrollment.renewHost(request.params.host);
      request.auditInfo!.target = renewed.hostId;
      request.auditInfo!.detail = `host ${renewed.hostname}: certificate ${renewed.serial} until ${renewed.notAfter}`;
      return renewed;
    },
  );

  app.post(
    '/v1/platform/hosts/:host/revoke',
    {
      schema: {
        tags: ['hosts'],
        summary:
          "Revoke a remote host's certificate: its connection is closed now and every later one refused",
        params: Type.Object(
          { host: Type.String({ minLength: 1, maxLength: 63 }) },
          { additionalProperties: false },
        ),
        response: { 200: HostRevoked, ...errors },
      },
    },
    async (request) => {
      request.auditInfo!.target = request.params.host;
      const revoked = await ctx.enrollment.revoke(request.params.host);
      request.auditInfo!.target = revoked.hostId;
      request.auditInfo!.detail = `host ${revoked.hostname}: ${revoked.revoked} certificate(s) revoked`;
      return revoked;
    },
  );
}
