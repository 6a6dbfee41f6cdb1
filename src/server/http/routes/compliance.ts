/**
 * /v1/platform/compliance: the compliance benchmark (platform:security:read). The latest report as JSON
 * or as a standalone HTML page (no scripts, strict CSP), the score history, and a run on demand (audited).
 */
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ErrorSchema } from '../../../api/common.js';
import { ComplianceHistory, ComplianceHistoryQuery, ComplianceReport } from '../../../api/compliance.js';
import { NotFoundError } from '../../../api/errors.js';
import { HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX } from '../../security/compliance/compliance-service.js';
import { REPORT_CSP, renderComplianceHtml } from '../../security/compliance/html.js';
import type { AppContext } from '../context.js';

/** POST .../runs takes no body (an empty object or nothing). */
const NoBody = Type.Optional(Type.Union([Type.Null(), Type.Object({}, { additionalProperties: false })]));
const errors = { 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 404: ErrorSchema };

export async function complianceRoutes(base: FastifyInstance, ctx: AppContext): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  const latest = async () => {
    const report = await ctx.compliance.latest();
    if (!report) throw new NotFoundError('compliance report');
    return report;
  };

  app.get(
    '/v1/platform/compliance/report',
    {
      schema: {
        tags: ['compliance'],
        summary: 'The latest compliance report: every check with its verdict and evidence, and the score',
        response: { 200: ComplianceReport, ...errors },
      },
    },
    latest,
  );

  app.get(
    '/v1/platform/compliance/report.html',
    {
      schema: {
        tags: ['compliance'],
        summary: 'The latest compliance report as a standalone HTML page (no scripts, no external assets)',
      },
    },
    async (_request, reply) => {
      const html = renderComplianceHtml(await latest());
      return reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', REPORT_CSP)
        .header('x-frame-options', 'DENY')
        .header('referrer-policy', 'no-referrer')
        .send(html);
    },
  );

  app.get(
    '/v1/platform/compliance/history',
    {
      schema: {
        tags: ['compliance'],
        summary: 'The score history of the compliance runs, newest first (?limit=, default 100)',
        querystring: ComplianceHistoryQuery,
        response: { 200: ComplianceHistory, ...errors },
      },
    },
    async (request) => {
      const { limit } = request.query;
      const n =
        limit === undefined ? HISTORY_LIMIT_DEFAULT : Math.min(Math.max(Number(limit), 1), HISTORY_LIMIT_MAX);
      return { items: await ctx.compliance.history(n) };
    },
  );

  app.post(
    '/v1/platform/compliance/runs',
    {
      schema: {
        tags: ['compliance'],
        summary: 'Run the compliance benchmark now; answers its report (audited)',
        body: NoBody,
        response: { 200: ComplianceReport, ...errors },
      },
    },
    async (request) => {
      const report = await ctx.compliance.run('manual');
      request.auditInfo!.target = report.id;
      request.auditInfo!.detail = `score ${report.score}% (${report.failed} failed${
        report.failed > 0
          ? `: ${report.results
              .filter((r) => !r.passed)
              .map((r) => r.id)
              .join(', ')}`
          : ''
      })`;
      return report;
    },
  );
}
