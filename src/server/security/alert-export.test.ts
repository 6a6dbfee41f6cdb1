import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import type { SecurityAlert } from '../../api/security.js';
import {
  SyslogExporter,
  WebhookExporter,
  alertExportersFromEnv,
  syslogMessage,
  webhookSignature,
} from './alert-export.js';

const ALERT: SecurityAlert = {
  id: '11111111-2222-4333-8444-555555555555',
  ruleId: 'auth-brute-force-source',
  severity: 'high',
  status: 'open',
  tenantId: null,
  groupKey: 'detail.sourceIp=203.0.113.9',
  summary: 'Brute-force login: 20 "failed" logins ]\nfrom one address',
  subjectType: 'user',
  subjectId: null,
  eventSeqs: [1, 2],
  count: 20,
  firstAt: '2026-11-27T10:00:00.000Z',
  lastAt: '2026-11-27T10:01:00.000Z',
  response: { action: 'alert', target: null, outcome: 'alert only' },
  assignee: null,
  notes: [],
  createdAt: '2026-11-27T10:01:00.000Z',
  updatedAt: '2026-11-27T10:01:00.000Z',
};
const SECRET = 'a-shared-secret-of-enough-length';

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => resolve(body));
  });
}

test('the webhook POSTs the alert signed with HMAC-SHA256 over "<timestamp>.<body>", retrying failures', async () => {
  const received: { headers: IncomingMessage['headers']; body: string }[] = [];
  let fail = 1;
  const server = createHttpServer((request, response) => {
    void readBody(request).then((body) => {
      received.push({ headers: request.headers, body });
      response.statusCode = fail-- > 0 ? 503 : 204;
      response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const exporter = new WebhookExporter(new URL(`http://127.0.0.1:${port}/hook`), SECRET, { attempts: 3 });
    await exporter.send(ALERT);
    assert.equal(received.length, 2, 'a 503 is retried');
    const last = received[1]!;
    const timestamp = String(last.headers['x-rampart-timestamp']);
    assert.equal(last.headers['x-rampart-signature'], webhookSignature(SECRET, timestamp, last.body));
    assert.notEqual(
      last.headers['x-rampart-signature'],
      webhookSignature('another-secret-xxxxxxxx', timestamp, last.body),
    );
    assert.deepEqual(JSON.parse(last.body), { type: 'rampart.alert', alert: ALERT });
    assert.ok(!JSON.stringify(last.headers).includes(SECRET), 'the secret itself is never sent');
  } finally {
    server.close();
  }
  assert.throws(() => new WebhookExporter(new URL('ftp://x/'), SECRET), /http/);
  assert.throws(() => new WebhookExporter(new URL('http://x/'), 'short'), /16 characters/);
});

test('RFC 5424 syslog: PRI from authpriv and the severity, structured data escaped, one line', () => {
  const message = syslogMessage(ALERT, 'host-1', 42);
  assert.match(message, /^<83>1 2026-11-27T10:01:00\.000Z host-1 rampart 42 alert \[rampart@32473 /);
  assert.match(message, /alertId="11111111-2222-4333-8444-555555555555" ruleId="auth-brute-force-source"/);
  assert.match(message, /tenant="-" severity="high" action="alert"\]/);
  assert.ok(!message.includes('\n'), 'a single line');
  assert.equal(syslogMessage({ ...ALERT, severity: 'critical' }, 'h', 1).slice(0, 5), '<82>1');
});

test('syslog over UDP (one datagram) and TCP (octet counting)', async () => {
  const udp = createSocket('udp4');
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const datagram = new Promise<string>((resolve) => udp.once('message', (m) => resolve(m.toString())));
  await new SyslogExporter('udp', '127.0.0.1', udp.address().port).send(ALERT);
  assert.match(await datagram, /^<83>1 .* rampart \d+ alert \[rampart@32473/);
  udp.close();

  let data = '';
  const tcp = createTcpServer((socket) => socket.on('data', (chunk: Buffer) => (data += chunk.toString())));
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  await new SyslogExporter('tcp', '127.0.0.1', (tcp.address() as AddressInfo).port).send(ALERT);
  await new Promise((r) => setTimeout(r, 100));
  tcp.close();
  const space = data.indexOf(' ');
  assert.equal(Number(data.slice(0, space)), Buffer.byteLength(data.slice(space + 1)));
});

test('configuration from the environment; bad values are refused', () => {
  assert.deepEqual(alertExportersFromEnv({}), []);
  const both = alertExportersFromEnv({
    RAMPART_ALERT_WEBHOOK_URL: 'https://siem.example/hook',
    RAMPART_ALERT_WEBHOOK_SECRET: SECRET,
    RAMPART_ALERT_SYSLOG: 'tcp://127.0.0.1:6514',
  });
  assert.deepEqual(
    both.map((e) => e.name),
    ['webhook', 'syslog'],
  );
  assert.throws(() => alertExportersFromEnv({ RAMPART_ALERT_SYSLOG: 'http://x:1' }), /udp:\/\/host:port/);
  assert.throws(() => alertExportersFromEnv({ RAMPART_ALERT_WEBHOOK_URL: 'https://x/' }), /16 characters/);
});
