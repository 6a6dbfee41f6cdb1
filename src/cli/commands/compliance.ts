/**
 * `rampart compliance`: the compliance benchmark (platform admins; platform:security:read).
 * `report` shows the latest run (GET /v1/platform/compliance/report; --html FILE saves the standalone
 * HTML page), `run` runs it now (POST /v1/platform/compliance/runs), `history` lists the scores.
 */
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ComplianceHistory, ComplianceReport } from '../../api/compliance.js';
import type { CliContext, CommandDeps } from '../context.js';
import { GeneralError } from '../errors.js';
import { formatTable, truncate, type Cell } from '../output.js';
import { integerIn, parsePath } from '../validation.js';

export const COMPLIANCE_HISTORY_LIMIT_MAX = 1000;

export function complianceReportText(report: ComplianceReport, color: boolean): string {
  const header =
    `Compliance score ${report.score}% (${report.passed} passed, ${report.failed} failed) — run ` +
    `${report.id} (${report.trigger}) at ${report.finishedAt}`;
  const table = formatTable(
    ['CHECK', 'SEVERITY', 'RESULT', 'EVIDENCE'],
    report.results.map((r): Cell[] => [
      r.id,
      r.severity,
      r.passed ? { text: 'pass', color: 'green' } : { text: 'FAIL', color: 'red' },
      truncate(r.evidence, 90),
    ]),
    color,
  );
  return `${header}\n\n${table}`;
}

function print(ctx: CliContext, report: ComplianceReport): void {
  if (ctx.out.json) {
    ctx.out.printJson(report);
    return;
  }
  ctx.out.print(complianceReportText(report, ctx.out.color));
}

export function registerComplianceCommands(program: Command, deps: CommandDeps): void {
  const compliance = program
    .command('compliance')
    .description('the compliance benchmark of the platform and every VM (platform admins)');

  compliance
    .command('report')
    .description('show the latest compliance report; --html FILE saves it as a standalone HTML page')
    .option('--html <file>', 'write the HTML report to this file (- for standard output)', parsePath)
    .action(async (opts: { html?: string }, cmd: Command) => {
      const ctx = deps.context(cmd);
      if (opts.html !== undefined) {
        const html = await ctx.client.getText('/v1/platform/compliance/report.html', { tenant: false });
        if (opts.html === '-') {
          process.stdout.write(html);
          return;
        }
        try {
          writeFileSync(opts.html, html, { mode: 0o600 });
        } catch (err) {
          throw new GeneralError(`cannot write ${opts.html}: ${(err as Error).message}`);
        }
        if (ctx.out.json) ctx.out.printJson({ file: opts.html, bytes: Buffer.byteLength(html) });
        else ctx.out.print(`wrote the compliance report to ${opts.html}`);
        return;
      }
      print(
        ctx,
        await ctx.client.request<ComplianceReport>('GET', '/v1/platform/compliance/report', {
          tenant: false,
        }),
      );
    });

  compliance
    .command('run')
    .description('run the compliance benchmark now and show its report (audited)')
    .action(async (_opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      print(
        ctx,
        await ctx.client.request<ComplianceReport>('POST', '/v1/platform/compliance/runs', {
          tenant: false,
        }),
      );
    });

  compliance
    .command('history')
    .description('the scores of past compliance runs, newest first')
    .option(
      '--limit <n>',
      `at most this many runs (1-${COMPLIANCE_HISTORY_LIMIT_MAX}; default 100)`,
      integerIn(1, COMPLIANCE_HISTORY_LIMIT_MAX),
    )
    .action(async (opts: { limit?: number }, cmd: Command) => {
      const ctx = deps.context(cmd);
      const history = await ctx.client.request<ComplianceHistory>('GET', '/v1/platform/compliance/history', {
        tenant: false,
        query: { limit: opts.limit === undefined ? undefined : String(opts.limit) },
      });
      if (ctx.out.json) {
        ctx.out.printJson(history);
        return;
      }
      ctx.out.print(
        formatTable(
          ['RUN', 'FINISHED', 'TRIGGER', 'SCORE', 'PASSED', 'FAILED'],
          history.items.map((r) => [
            r.id,
            r.finishedAt,
            r.trigger,
            `${r.score}%`,
            String(r.passed),
            String(r.failed),
          ]),
          ctx.out.color,
        ),
      );
    });
}
