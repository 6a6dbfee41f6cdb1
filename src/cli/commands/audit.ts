/**
 * `rampart audit ...`: read the tamper-evident audit log, verify it (on the server, or an export
 * offline with the checkpoint public key) and export it. A failed verification exits 8.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Option, type Command } from 'commander';
import type { AuditRecordView, AuditVerification } from '../../api/audit.js';
import type { AuditListQuery } from '../api-client.js';
import type { CliContext, CommandDeps } from '../context.js';
import { GeneralError, UsageError, VerificationError } from '../errors.js';
import {
  AUDIT_OUTCOMES,
  integerIn,
  parseActor,
  parseAuditAction,
  parsePath,
  parseTime,
  resolveTime,
} from '../validation.js';
import { auditTable, describeFirstBad, verificationDetails } from '../views.js';

/** The file names of an export directory (what scripts/verify-audit-export.sh reads). */
export const EXPORT_FILES = {
  records: 'records.jsonl',
  checkpoints: 'checkpoints.jsonl',
  publicKey: 'audit-public-key.pem',
} as const;
/** The largest page the server answers; longer --limit values are fetched page by page. */
export const AUDIT_PAGE_MAX = 1000;
export const AUDIT_LIMIT_MAX = 100_000;

interface ListFlags {
  actor?: string;
  action?: string;
  outcome?: string;
  since?: string;
  until?: string;
  after?: number;
  limit?: number;
  all?: boolean;
}

/** Fetches records, following `next` until `limit` records are there (one page without a limit). */
export async function fetchAuditRecords(
  ctx: CliContext,
  filters: AuditListQuery,
  limit: number | undefined,
  platform: boolean,
): Promise<{ items: AuditRecordView[]; next: string | null }> {
  if (limit === undefined) return ctx.client.listAudit(filters, platform);
  const items: AuditRecordView[] = [];
  let after = filters.after;
  let next: string | null = null;
  while (items.length < limit) {
    const want = Math.min(limit - items.length, AUDIT_PAGE_MAX);
    const page = await ctx.client.listAudit({ ...filters, after, limit: String(want) }, platform);
    items.push(...page.items);
    next = page.next;
    if (next === null || page.items.length === 0) break;
    after = next;
  }
  if (items.length > limit) {
    items.length = limit;
    next = String(items[items.length - 1]?.seq ?? next);
  }
  return { items, next };
}

function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

function readExportFile(dir: string, name: string): string {
  const path = join(dir, name);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new UsageError(
        `${path} does not exist: --offline wants a directory made by \`rampart audit export\``,
      );
    }
    throw new GeneralError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/** The number of records the last checkpoint of an export covers (0 without checkpoints). */
function signedRecords(checkpointsJsonl: string): number {
  const last = checkpointsJsonl.trimEnd().split('\n').pop();
  if (!last) return 0;
  try {
    const count = (JSON.parse(last) as { count?: unknown }).count;
    return typeof count === 'number' ? count : 0;
  } catch {
    return 0;
  }
}

/** Verifies an export directory locally, with the hash chain and the checkpoint signatures. */
async function verifyOffline(dir: string): Promise<{ result: AuditVerification; signed: number }> {
  const records = readExportFile(dir, EXPORT_FILES.records);
  const checkpoints = readExportFile(dir, EXPORT_FILES.checkpoints);
  const publicKeyPem = readExportFile(dir, EXPORT_FILES.publicKey);
  const { verifyExport } = await import('../../common/audit-chain.js');
  let result: AuditVerification;
  try {
    result = verifyExport(records, checkpoints, publicKeyPem);
  } catch (err) {
    throw new UsageError(
      `cannot verify ${dir}: ${EXPORT_FILES.publicKey} is not a usable public key (${(err as Error).message})`,
    );
  }
  return { result, signed: signedRecords(checkpoints) };
}

/** Checks that `dir` is absent or an empty directory, and creates it (0700) when absent. */
function prepareExportDir(dir: string): void {
  let entries: string[];
  try {
    if (!statSync(dir).isDirectory()) throw new UsageError(`${dir} exists and is not a directory`);
    entries = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof UsageError) throw err;
      throw new GeneralError(`cannot use ${dir}: ${(err as Error).message}`);
    }
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (mkdirErr) {
      throw new GeneralError(`cannot create ${dir}: ${(mkdirErr as Error).message}`);
    }
    return;
  }
  if (entries.length > 0) {
    throw new UsageError(`refusing to export into ${dir}: it is not empty (choose a new or empty directory)`);
  }
}

function countLines(text: string): number {
  return text.split('\n').filter((line) => line.length > 0).length;
}

export function registerAuditCommands(program: Command, deps: CommandDeps): void {
  const audit = program.command('audit').description('read, verify and export the tamper-evident audit log');

  audit
    .command('list')
    .alias('ls')
    .description(
      "list audit records, oldest first: the tenant's (--tenant), or with --all every tenant's " +
        '(platform admins and auditors; there --tenant narrows to one tenant)',
    )
    .option('--actor <name>', 'only records of this actor (a username)', parseActor)
    .option('--action <action>', 'only this action, e.g. auth:login or vm:create', parseAuditAction)
    .addOption(new Option('--outcome <outcome>', 'only this outcome').choices(AUDIT_OUTCOMES))
    .option(
      '--since <time>',
      'records from this time: ISO 8601 (e.g. 2026-01-31T12:00:00Z) or an age such as 30m, 12h, 7d',
      parseTime,
    )
    .option('--until <time>', 'records up to this time (same forms as --since)', parseTime)
    .option(
      '--after <seq>',
      'records after this sequence number (to page on)',
      integerIn(0, 999_999_999_999_999),
    )
    .option(
      '--limit <n>',
      `at most this many records, fetched page by page (1-${AUDIT_LIMIT_MAX}; default: one page)`,
      integerIn(1, AUDIT_LIMIT_MAX),
    )
    .option('--all', 'all tenants (GET /v1/platform/audit) instead of the request tenant')
    .action(async (opts: ListFlags, cmd: Command) => {
      const ctx = deps.context(cmd);
      const now = ctx.now();
      const filters: AuditListQuery = {
        actor: opts.actor,
        action: opts.action,
        outcome: opts.outcome,
        since: opts.since === undefined ? undefined : resolveTime(opts.since, now),
        until: opts.until === undefined ? undefined : resolveTime(opts.until, now),
        after: opts.after === undefined ? undefined : String(opts.after),
      };
      const page = await fetchAuditRecords(ctx, filters, opts.limit, opts.all === true);
      if (ctx.out.json) {
        ctx.out.printJson(page);
        return;
      }
      ctx.out.print(auditTable(page.items, { now, color: ctx.out.color, tenants: opts.all === true }));
      if (page.next !== null) {
        ctx.out.progress(`(more records follow: add --after ${page.next}, or ask for more with --limit)`);
      }
    });

  audit
    .command('verify')
    .description(
      'verify the hash chain and every signed checkpoint: on the server, or with --offline an export ' +
        'directory here; prints the first bad record or checkpoint and exits 8 if anything fails',
    )
    .option(
      '--offline <dir>',
      'verify a directory made by `rampart audit export`, without the server',
      parsePath,
    )
    .action(async (opts: { offline?: string }, cmd: Command) => {
      const ctx = deps.context(cmd);
      let result: AuditVerification;
      let unsigned = 0;
      if (opts.offline !== undefined) {
        const offline = await verifyOffline(opts.offline);
        result = offline.result;
        unsigned = result.ok ? Math.max(0, result.records - offline.signed) : 0;
      } else {
        result = await ctx.client.verifyAudit();
      }
      if (ctx.out.json) ctx.out.printJson(result);
      else ctx.out.print(verificationDetails(result, { now: ctx.now(), color: ctx.out.color }));
      if (!result.ok) throw new VerificationError(`audit verification failed: ${describeFirstBad(result)}`);
      if (unsigned > 0 && !ctx.out.json) {
        ctx.out.progress(
          `note: the last ${unsigned} record(s) come after the last signed checkpoint: they are chained ` +
            'but not signed; compare the head with the server (`rampart audit verify`)',
        );
      }
    });

  audit
    .command('export')
    .description(
      'export the whole audit log to a new or empty directory: records.jsonl, checkpoints.jsonl and ' +
        'audit-public-key.pem, which verify offline',
    )
    .argument('<dir>', 'the directory to write (created if missing; it must be empty)', parsePath)
    .action(async (dir: string, _opts: unknown, cmd: Command) => {
      const ctx = deps.context(cmd);
      prepareExportDir(dir);
      // Key and checkpoints first: every checkpoint then covers records that the later export holds.
      const key = await ctx.client.auditPublicKey();
      const checkpoints = await ctx.client.exportAuditCheckpoints();
      const records = await ctx.client.exportAuditRecords();
      const files: [string, string][] = [
        [
          EXPORT_FILES.publicKey,
          key.publicKeyPem.endsWith('\n') ? key.publicKeyPem : `${key.publicKeyPem}\n`,
        ],
        [EXPORT_FILES.checkpoints, checkpoints],
        [EXPORT_FILES.records, records],
      ];
      for (const [name, text] of files) {
        const path = join(dir, name);
        try {
          writeFileSync(path, text, { flag: 'wx', mode: 0o600 });
        } catch (err) {
          throw new GeneralError(`cannot write ${path}: ${(err as Error).message}`);
        }
      }
      const summary = {
        directory: dir,
        records: countLines(records),
        checkpoints: countLines(checkpoints),
        files: Object.values(EXPORT_FILES),
      };
      if (ctx.out.json) {
        ctx.out.printJson(summary);
        return;
      }
      ctx.out.print(`exported ${summary.records} records and ${summary.checkpoints} checkpoints to ${dir}`);
      ctx.out.progress(
        `verify it offline with: scripts/verify-audit-export.sh ${shellQuote(dir)} (in the Rampart ` +
          `sources), or: rampart audit verify --offline ${shellQuote(dir)}`,
      );
    });
}
