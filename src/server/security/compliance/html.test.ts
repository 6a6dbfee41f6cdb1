import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ComplianceReport } from '../../../api/compliance.js';
import { REPORT_CSP, escapeHtml, renderComplianceHtml } from './html.js';

const HOSTILE = `<script>alert("x")</script>&'`;

function report(): ComplianceReport {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:00:01.000Z',
    trigger: 'manual',
    score: 50,
    passed: 1,
    failed: 1,
    results: [
      {
        id: 'no-admin-ports-open-to-world',
        title: 'No admin ports',
        severity: 'high',
        passed: false,
        evidence: `1 ingress rule opens admin ports (groups: ${HOSTILE})`,
        offending: [{ type: 'security-group-rule', group: { name: HOSTILE } }],
      },
      { id: 'quotas-set', title: 'Quotas', severity: 'medium', passed: true, evidence: 'ok', offending: [] },
    ],
  };
}

test('escapeHtml escapes the five special characters', () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
});

test('the HTML report: check ids, verdicts, score, escaped hostile text, no script, no external assets', () => {
  const html = renderComplianceHtml(report());
  assert.match(html, /^<!DOCTYPE html>/);
  assert.ok(html.includes('no-admin-ports-open-to-world'));
  assert.ok(html.includes('quotas-set'));
  assert.ok(html.includes('50%'));
  assert.ok(html.includes('class="fail">FAIL'));
  assert.ok(html.includes('class="pass">PASS'));
  assert.ok(!html.includes('<script'), 'hostile text must be escaped');
  assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;'));
  // The offending objects, JSON-encoded and then escaped (the quotes of JSON inside the name too).
  assert.ok(html.includes('&lt;script&gt;alert(\\&quot;x\\&quot;)'));
  assert.doesNotMatch(html, /(src|href)\s*=/i, 'no external resources or links');
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i, 'no event handler attributes');
  assert.ok(html.includes('http-equiv="Content-Security-Policy"'));
});

test('the CSP allows nothing but the inline style, by hash', () => {
  assert.match(REPORT_CSP, /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*'/);
  assert.ok(!REPORT_CSP.includes('unsafe'));
});
