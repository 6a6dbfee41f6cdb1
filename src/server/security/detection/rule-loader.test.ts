import assert from 'node:assert/strict';
import { test } from 'node:test';
import { scanJson } from './json-positions.js';
import { parseRuleFile, regexRisk, webhookUrlAllowed, type RuleFileError } from './rule-loader.js';
import { DetectionEngine } from './rule-engine.js';
import { ev } from './test-helpers.js';

function rule(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    description: `rule ${id}`,
    severity: 'medium',
    match: { kind: 'test.event' },
    response: { action: 'alert' },
    ...extra,
  };
}

const file = (...rules: Record<string, unknown>[]): string => JSON.stringify({ version: 1, rules }, null, 2);

function errorsOf(text: string): RuleFileError[] {
  const result = parseRuleFile(text);
  assert.equal(result.ok, false, 'expected the file to be rejected');
  return result.ok ? [] : result.errors;
}

/** The 1-based line of the first occurrence of `needle` (after line `after`). */
function lineOf(text: string, needle: string, after = 0): number {
  const lines = text.split('\n');
  for (let i = after; i < lines.length; i++) if (lines[i]!.includes(needle)) return i + 1;
  throw new Error(`${needle} not in text`);
}

test('a valid file compiles its rules in order', () => {
  const result = parseRuleFile(file(rule('a'), rule('b', { enabled: false })));
  assert.ok(result.ok);
  assert.deepEqual(
    result.rules.map((r) => [r.id, r.type, r.enabled]),
    [
      ['a', 'match', true],
      ['b', 'match', false],
    ],
  );
});

test('a JSON syntax error names its line and column', () => {
  const text = '{\n  "version": 1,\n  "rules": [\n    { "id": "a", }\n  ]\n}\n';
  const [error, ...rest] = errorsOf(text);
  assert.equal(rest.length, 0);
  assert.equal(error!.line, 4);
  assert.equal(error!.column, 18);
  assert.match(error!.message, /JSON syntax error/);
  assert.equal(errorsOf('{"version": 1, "rules": [')[0]!.line, 1);
  assert.match(errorsOf('\n\n{"version": 1}\n x')[0]!.message, /after the end/);
  assert.equal(errorsOf('\n\n{"version": 1}\n x')[0]!.line, 4);
  const unterminated = errorsOf('{\n"version": 1,\n"rules": ["abc\n]}')[0]!;
  assert.equal(unterminated.line, 3);
  assert.equal(errorsOf('{"a": 01}')[0]!.column, 8);
});

test('a schema error names the line of the offending value and the rule id', () => {
  const text = file(
    rule('first'),
    rule('second', { threshold: { count: 'ten', windowSeconds: 60, groupBy: [] } }),
  );
  const errors = errorsOf(text);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.line, lineOf(text, '"count": "ten"'));
  assert.match(errors[0]!.message, /rule second: must be integer/);
  assert.match(errors[0]!.message, /\/rules\/1\/threshold\/count/);

  const badAction = file(rule('x'), rule('y', { response: { action: 'explode' } }));
  const [e] = errorsOf(badAction);
  assert.equal(e!.line, lineOf(badAction, '"explode"'));
  assert.match(e!.message, /rule y: must be one of "alert", "pause-vm"/);

  const unknownKey = file(rule('u', { distinct: 'detail.x' }));
  const [u] = errorsOf(unknownKey);
  assert.equal(u!.line, lineOf(unknownKey, '"distinct"'));
  assert.match(u!.message, /unknown property "distinct" \(`distinct` belongs inside `threshold`\)/);

  const badCondition = file(rule('c', { match: { kind: 'k', where: { 'detail.x': { foo: 1 } } } }));
  assert.match(errorsOf(badCondition)[0]!.message, /unknown property "foo"/);
  assert.match(errorsOf(file(rule('Bad_Id')))[0]!.message, /must match pattern/);
  assert.match(errorsOf('{"version": 2, "rules": []}')[0]!.message, /must be 1/);
});

test('duplicate ids and duplicate keys name both places', () => {
  const text = file(rule('same'), rule('other'), rule('same'));
  const errors = errorsOf(text);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.line, lineOf(text, '"id": "same"', lineOf(text, '"id": "other"')));
  assert.match(errors[0]!.message, /rule same: duplicate rule id "same" \(first at \/rules\/0\)/);

  const dupKey = '{\n "version": 1,\n "rules": [],\n "rules": []\n}';
  const [d] = errorsOf(dupKey);
  assert.equal(d!.line, 4);
  assert.match(d!.message, /duplicate key "rules"/);
});

test('semantic errors: shape, fields, regexes and responses, each with its line', () => {
  const cases: [Record<string, unknown>, RegExp, string][] = [
    [{ match: undefined }, /needs `match`/, '"id": "r"'],
    [
      { match: undefined, threshold: { count: 2, windowSeconds: 5, groupBy: [] } },
      /`threshold` needs a `match`/,
      '"threshold"',
    ],
    [
      { sequence: { steps: [{ kind: 'a' }, { kind: 'b' }], windowSeconds: 5, groupBy: [] } },
      /cannot be combined/,
      '"sequence"',
    ],
    [{ match: { kind: 'k', where: { 'bogus.field': 1 } } }, /unknown field "bogus.field"/, '"bogus.field"'],
    [{ match: { kind: 'k', where: { detail: 1 } } }, /name a field inside detail/, '"detail": 1'],
    [{ match: { kind: 'k', where: { 'detail.constructor': 1 } } }, /reserved name/, '"detail.constructor"'],
    [{ match: { kind: 'k', where: { 'detail.x': { regex: '(a+)+$' } } } }, /catastrophic/, '"regex"'],
    [{ match: { kind: 'k', where: { 'detail.x': { regex: '(a' } } } }, /invalid regex/, '"regex"'],
    [{ match: { kind: 'k', where: { 'detail.x': { regex: '(a)\\1' } } } }, /backreferences/, '"regex"'],
    [{ match: { kind: 'k', where: { 'detail.x': { flags: 'i' } } } }, /`flags` needs `regex`/, '"flags"'],
    [
      { threshold: { count: 2, windowSeconds: 5, groupBy: ['nope'], distinct: 'detail.a' } },
      /unknown field "nope"/,
      '"nope"',
    ],
    [
      { threshold: { count: 2, windowSeconds: 5, groupBy: [], distinct: 'other.a' } },
      /unknown field "other.a"/,
      '"distinct"',
    ],
    [
      { threshold: { count: 2, windowSeconds: 5, groupBy: ['detail.a'] }, groupBy: [] },
      /rule-level `groupBy` is for match-only/,
      '"groupBy": []',
    ],
    [{ response: { action: 'pause-vm' } }, /pause-vm needs a `target`/, '"action"'],
    [{ response: { action: 'alert', allow: [] } }, /only applies to isolate-vm/, '"allow"'],
    [{ response: { action: 'webhook' } }, /webhook needs a `url`/, '"action"'],
    [{ response: { action: 'webhook', url: 'http://example.com/x' } }, /must be https/, '"url"'],
    [{ response: { action: 'webhook', url: 'https://u:p@example.com/x' } }, /must be https/, '"url"'],
    [
      {
        response: {
          action: 'isolate-vm',
          target: 'detail.vmId',
          allow: [{ direction: 'ingress', protocol: 'tcp', ports: '70000', cidr: '10.0.0.1/32' }],
        },
      },
      /ports must be/,
      '"ports"',
    ],
  ];
  for (const [extra, message, needle] of cases) {
    const text = file(rule('ok'), rule('r', extra));
    const errors = errorsOf(text);
    assert.ok(errors.length >= 1, `${String(message)}: no errors`);
    const found = errors.find((e) => message.test(e.message));
    assert.ok(found, `${String(message)} not in ${JSON.stringify(errors)}`);
    assert.match(found.message, /^rule r: /);
    assert.equal(
      found.line,
      lineOf(text, needle, lineOf(text, '"id": "r"') - 1),
      `line of ${String(message)}`,
    );
  }
  // Over-long regexes are refused by the schema.
  assert.match(
    errorsOf(
      file(rule('long', { match: { kind: 'k', where: { 'detail.x': { regex: 'a'.repeat(300) } } } })),
    )[0]!.message,
    /maxLength|must NOT have more than|256/i,
  );
});

test('regexRisk: nested quantifiers are flagged, ordinary patterns pass', () => {
  for (const bad of ['(a+)+', '(.*)*', '(\\w+\\s?)+', '((ab)*c)+', '(x+){2,}'])
    assert.notEqual(regexRisk(bad), null, bad);
  for (const good of ['segfault at [0-9a-f]+', '^(?:iam|platform):', '(ab)+', '[(+)]+', 'a+b*', '(a|b){3}'])
    assert.equal(regexRisk(good), null, good);
});

test('replace keeps the old rules working when the new file is broken', () => {
  const engine = new DetectionEngine(file(rule('old')));
  assert.deepEqual(engine.ruleIds, ['old']);
  const broken = file(rule('new', { severity: 'extreme' }));
  const result = engine.replace(broken);
  assert.equal(result.ok, false);
  assert.ok(!result.ok && result.errors[0]!.line === lineOf(broken, '"extreme"'));
  assert.deepEqual(engine.ruleIds, ['old']);
  assert.deepEqual(
    engine.process(ev('test.event')).map((d) => d.ruleId),
    ['old'],
  );
  assert.equal(engine.replace('{ "version": 1, "rules": [ }').ok, false);
  assert.deepEqual(engine.ruleIds, ['old']);

  const ok = engine.replace(file(rule('new')));
  assert.equal(ok.ok, true);
  assert.deepEqual(
    engine.process(ev('test.event')).map((d) => d.ruleId),
    ['new'],
  );
  assert.throws(() => new DetectionEngine(broken), /line \d+:\d+: rule new/);
});

test('scanJson records key lines and strings with escapes', () => {
  const text = '{\n "a\\"b": [1,\n  {"c": "x\\u0041"}],\n "d/e~f": true\n}';
  const scan = scanJson(text);
  assert.equal(scan.error, undefined);
  assert.deepEqual(scan.positions.get('/a"b'), { line: 2, column: 2 });
  assert.deepEqual(scan.positions.get('/a"b/1/c'), { line: 3, column: 4 });
  assert.equal(scan.positions.get('/d~1e~0f')?.line, 4);
  assert.equal(scanJson('{"a": "\u0001"}').error?.message.includes('control character'), true);
});

test('a rule webhook is https, or http to loopback only, and never carries credentials', () => {
  assert.equal(webhookUrlAllowed('https://hooks.example.com/rampart'), true);
  assert.equal(webhookUrlAllowed('http://127.0.0.1:9000/relay'), true);
  assert.equal(webhookUrlAllowed('http://localhost/relay'), true);
  assert.equal(webhookUrlAllowed('http://10.0.0.1/relay'), false);
  assert.equal(webhookUrlAllowed('http://127.0.0.1.example.com/'), false);
  assert.equal(webhookUrlAllowed('https://user:secret@example.com/'), false);
  assert.equal(webhookUrlAllowed('ftp://example.com/'), false);
  assert.equal(webhookUrlAllowed('not a url'), false);
});
