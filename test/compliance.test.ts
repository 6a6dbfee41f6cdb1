/**
 * The compliance benchmark against the real server: a run reports every check; weakening a setting
 * (an SSH rule open to the world, a world-readable master key, a tenant accepting unsigned images, an
 * unlimited quota) fails the matching check with evidence naming the object, and a newly failing check
 * raises one alert (not one per run); fixing it passes again; the history keeps the scores; the HTML
 * page renders with a strict CSP; the CLI reads it all. The schedule is off (runs on demand only).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { ComplianceCheckResult, ComplianceHistory, ComplianceReport } from '../src/api/compliance.js';
import type { SecurityAlert } from '../src/api/security.js';
import type { Vm } from '../src/api/vm.js';
import { CLI_MAIN } from './helpers/repo.js';
import { RampartHarness } from './helpers/rampart-harness.js';

const execFileAsync = promisify(execFile);
const TENANT = 'comply';
const CHECK_IDS = [
  'signatures-required',
  'images-scanned-clean',
  'qemu-confined',
  'no-admin-ports-open-to-world',
  'mfa-on-admins',
  'quotas-set',
  'audit-chain-verified',
  'master-key-private',
  'anti-spoofing-on-ports',
  'host-certificates-current',
];
let harness: RampartHarness;
let masterKey: string;

async function run(): Promise<ComplianceReport> {
  const response = await harness.api<ComplianceReport>('POST', '/v1/platform/compliance/runs');
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

function check(report: ComplianceReport, id: string): ComplianceCheckResult {
  const result = report.results.find((r) => r.id === id);
  assert.ok(result, `check ${id} missing`);
  return result;
}

async function complianceAlerts(): Promise<SecurityAlert[]> {
  const list = await harness.api<{ items: SecurityAlert[] }>(
    'GET',
    '/v1/platform/security/alerts?limit=1000',
  );
  assert.equal(list.status, 200);
  return list.body.items.filter((a) => a.ruleId.startsWith('compliance-'));
}

before(async () => {
  harness = await RampartHarness.start({ env: { RAMPART_COMPLIANCE_INTERVAL_SECONDS: '0' } });
  assert.equal((await harness.api('POST', '/v1/tenants', { name: TENANT })).status, 201);
  masterKey = join(harness.dataDir, 'secrets', 'master.key');
});

after(async () => {
  if (masterKey) chmodSync(masterKey, 0o600);
  await harness?.cleanup();
});

test('no report before the first run: 404; history empty', async () => {
  assert.equal((await harness.api('GET', '/v1/platform/compliance/report')).status, 404);
  assert.equal((await harness.api('GET', '/v1/platform/compliance/report.html')).status, 404);
  const history = await harness.api<ComplianceHistory>('GET', '/v1/platform/compliance/history');
  assert.equal(history.status, 200);
  assert.deepEqual(history.body.items, []);
});

test('a run reports every check with evidence; the baseline passes what a fresh server gets right', async () => {
  const report = await run();
  assert.deepEqual(
    report.results.map((r) => r.id),
    CHECK_IDS,
  );
  assert.equal(report.trigger, 'manual');
  assert.equal(report.passed + report.failed, CHECK_IDS.length);
  assert.equal(report.score, Math.round((report.passed * 1000) / CHECK_IDS.length) / 10);
  for (const result of report.results) assert.ok(result.evidence.length > 0, result.id);
  for (const id of [
    'signatures-required',
    'images-scanned-clean',
    'qemu-confined',
    'no-admin-ports-open-to-world',
    'quotas-set',
    'audit-chain-verified',
    'master-key-private',
    'anti-spoofing-on-ports',
    'host-certificates-current',
  ])
    assert.equal(check(report, id).passed, true, `${id}: ${check(report, id).evidence}`);
  assert.match(check(report, 'qemu-confined').evidence, /0 running VMs/);
  assert.match(check(report, 'audit-chain-verified').evidence, /verified at/);
  // The harness's admin has no TOTP: the MFA check names it, and (newly failing) raises an alert.
  const mfa = check(report, 'mfa-on-admins');
  assert.equal(mfa.passed, false);
  assert.ok(
    mfa.offending.some((o) => (o as { username: string }).username === 'admin'),
    JSON.stringify(mfa.offending),
  );
  const alerts = await complianceAlerts();
  const mfaAlert = alerts.find((a) => a.ruleId === 'compliance-mfa-on-admins');
  assert.ok(mfaAlert, JSON.stringify(alerts));
  assert.equal(mfaAlert.subjectType, 'compliance');
  assert.equal(mfaAlert.subjectId, report.id);
  assert.equal(mfaAlert.severity, 'high');
  // The latest report is the run.
  const latest = await harness.api<ComplianceReport>('GET', '/v1/platform/compliance/report');
  assert.equal(latest.status, 200);
  assert.equal(latest.body.id, report.id);
});

test('weakened settings fail the matching checks with evidence, alert once, and pass again when fixed', async () => {
  const before = await complianceAlerts();
  // An SSH rule open to the whole Internet.
  assert.equal(
    (await harness.api('POST', `/v1/security-groups?tenant=${TENANT}`, { name: 'ssh-open' })).status,
    201,
  );
  const rule = await harness.api<{ id: string }>(
    'POST',
    `/v1/security-groups/ssh-open/rules?tenant=${TENANT}`,
    {
      direction: 'ingress',
      protocol: 'tcp',
      portMin: 22,
      portMax: 22,
      remoteCidr: '0.0.0.0/0',
    },
  );
  assert.equal(rule.status, 201, JSON.stringify(rule.body));
  // A master key readable by everyone.
  chmodSync(masterKey, 0o644);
  // A tenant accepting unsigned images.
  const policy = await harness.api('PUT', `/v1/tenants/${TENANT}/trust-policy`, { requireSignatures: false });
  assert.equal(policy.status, 200, JSON.stringify(policy.body));
  // An unlimited quota.
  const quota = await harness.api('PUT', `/v1/tenants/${TENANT}/quota`, { vms: -1 });
  assert.equal(quota.status, 200, JSON.stringify(quota.body));

  const weak = await run();
  const ports = check(weak, 'no-admin-ports-open-to-world');
  assert.equal(ports.passed, false);
  assert.match(ports.evidence, /ssh-open/);
  assert.equal((ports.offending[0] as { group: { name: string } }).group.name, 'ssh-open');
  assert.equal((ports.offending[0] as { remoteCidr: string }).remoteCidr, '0.0.0.0/0');
  const key = check(weak, 'master-key-private');
  assert.equal(key.passed, false);
  assert.match(key.evidence, /mode 0644/);
  const signatures = check(weak, 'signatures-required');
  assert.equal(signatures.passed, false);
  assert.deepEqual(
    signatures.offending.map((o) => (o as { name: string }).name),
    [TENANT],
  );
  const quotas = check(weak, 'quotas-set');
  assert.equal(quotas.passed, false);
  assert.deepEqual(signatures.offending.length, 1);
  assert.deepEqual((quotas.offending[0] as { unlimited: string[] }).unlimited, ['vms']);
  assert.ok(weak.failed >= 5);

  // Each newly failing check raised one alert naming the run.
  const raised = (await complianceAlerts()).filter((a) => !before.some((b) => b.id === a.id));
  for (const id of [
    'no-admin-ports-open-to-world',
    'master-key-private',
    'signatures-required',
    'quotas-set',
  ]) {
    const alert = raised.find((a) => a.ruleId === `compliance-${id}`);
    assert.ok(alert, `${id}: ${JSON.stringify(raised.map((a) => a.ruleId))}`);
    assert.equal(alert.subjectId, weak.id);
    assert.equal(alert.status, 'open');
  }
  assert.match(raised.find((a) => a.ruleId === 'compliance-quotas-set')!.severity, /^medium$/);
  assert.match(raised.find((a) => a.ruleId === 'compliance-master-key-private')!.summary, /0644/);

  // Still failing on the next run: not newly failing, so no new alert and no count-up.
  await run();
  const again = await complianceAlerts();
  assert.equal(again.length, before.length + raised.length);
  for (const alert of again) assert.equal(alert.count, 1, alert.ruleId);

  // Fixed: every check passes again (MFA aside).
  assert.equal(
    (await harness.api('DELETE', `/v1/security-groups/ssh-open/rules/${rule.body.id}?tenant=${TENANT}`))
      .status,
    204,
  );
  chmodSync(masterKey, 0o600);
  assert.equal(
    (await harness.api('PUT', `/v1/tenants/${TENANT}/trust-policy`, { requireSignatures: true })).status,
    200,
  );
  assert.equal((await harness.api('PUT', `/v1/tenants/${TENANT}/quota`, { vms: null })).status, 200);
  const fixed = await run();
  for (const id of [
    'no-admin-ports-open-to-world',
    'master-key-private',
    'signatures-required',
    'quotas-set',
  ])
    assert.equal(check(fixed, id).passed, true, `${id}: ${check(fixed, id).evidence}`);
  assert.ok(fixed.score > weak.score);
});

test('history: every run with its score, newest first; ?limit= bounds it; runs are audited', async () => {
  const history = await harness.api<ComplianceHistory>('GET', '/v1/platform/compliance/history');
  assert.equal(history.status, 200);
  assert.equal(history.body.items.length, 4);
  const times = history.body.items.map((r) => r.startedAt);
  assert.deepEqual(times, [...times].sort().reverse());
  for (const item of history.body.items) {
    assert.equal(item.trigger, 'manual');
    assert.equal(item.passed + item.failed, CHECK_IDS.length);
    assert.equal(item.score, Math.round((item.passed * 1000) / CHECK_IDS.length) / 10);
  }
  const latest = await harness.api<ComplianceReport>('GET', '/v1/platform/compliance/report');
  assert.equal(history.body.items[0]!.id, latest.body.id);
  const limited = await harness.api<ComplianceHistory>('GET', '/v1/platform/compliance/history?limit=2');
  assert.equal(limited.body.items.length, 2);
  assert.equal((await harness.api('GET', '/v1/platform/compliance/history?limit=x')).status, 400);

  const audit = await harness.api<{ items: { action: string; target: string; detail: string }[] }>(
    'GET',
    '/v1/platform/audit?action=platform:compliance:run',
  );
  assert.equal(audit.status, 200, JSON.stringify(audit.body));
  assert.equal(audit.body.items.length, 4);
  assert.ok(audit.body.items.some((r) => r.target === latest.body.id && /^score /.test(r.detail)));
});

test('the HTML report: text/html, every check id, a strict CSP, no script', async () => {
  const response = await fetch(`${harness.url}/v1/platform/compliance/report.html`, {
    headers: { authorization: `Bearer ${harness.token}` },
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(
    response.headers.get('content-security-policy') ?? '',
    /^default-src 'none'; style-src 'sha256-/,
  );
  const html = await response.text();
  for (const id of CHECK_IDS) assert.ok(html.includes(id), id);
  assert.ok(!/<script/i.test(html));
  assert.ok(!/(src|href)\s*=/i.test(html));
});

test('the CLI: run, report (and --html), history', async () => {
  const env = { PATH: process.env.PATH, RAMPART_URL: harness.url, RAMPART_TOKEN: harness.token };
  const ran = await execFileAsync(process.execPath, [CLI_MAIN, '-o', 'json', 'compliance', 'run'], { env });
  const report = JSON.parse(ran.stdout) as ComplianceReport;
  assert.equal(report.results.length, CHECK_IDS.length);
  const text = await execFileAsync(process.execPath, [CLI_MAIN, 'compliance', 'report'], { env });
  assert.match(text.stdout, /Compliance score/);
  assert.match(text.stdout, /mfa-on-admins/);
  const file = join(tmpdir(), `rampart-compliance-${process.pid}.html`);
  await execFileAsync(process.execPath, [CLI_MAIN, 'compliance', 'report', '--html', file], { env });
  assert.match(readFileSync(file, 'utf8'), /<!DOCTYPE html>[\s\S]*master-key-private/);
  assert.equal(statSync(file).mode & 0o077, 0);
  const history = await execFileAsync(process.execPath, [CLI_MAIN, '-o', 'json', 'compliance', 'history'], {
    env,
  });
  const items = (JSON.parse(history.stdout) as ComplianceHistory).items;
  assert.equal(items[0]!.id, report.id);
  assert.equal(items.length, 5);
});

test('qemu-confined with one running VM: its hardening self-check passes', async () => {
  const created = await harness.api<Vm>('POST', '/v1/vms', {
    name: 'comply1',
    image: 'tiny',
    flavor: 'tiny',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  await harness.waitForState('comply1', 'running');
  const report = await run();
  const qemu = check(report, 'qemu-confined');
  assert.equal(qemu.passed, true, `${qemu.evidence} ${JSON.stringify(qemu.offending)}`);
  assert.match(qemu.evidence, /1 running VM\b/);
  const spoof = check(report, 'anti-spoofing-on-ports');
  assert.equal(spoof.passed, true, `${spoof.evidence} ${JSON.stringify(spoof.offending)}`);
  assert.equal((await harness.api('DELETE', '/v1/vms/comply1')).status, 202);
});
