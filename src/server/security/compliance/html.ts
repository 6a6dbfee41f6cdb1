/**
 * The compliance report as one standalone HTML page: no scripts, no external assets, every value
 * escaped, and a Content-Security-Policy (meta and header) that allows nothing but its own inline style
 * (by hash), so a saved copy is as inert as the served one.
 */
import { createHash } from 'node:crypto';
import type { ComplianceReport } from '../../../api/compliance.js';

const STYLE = [
  'body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1b1b1b;background:#fff}',
  'h1{font-size:1.5rem;margin:0 0 .25rem}',
  '.meta{color:#555;margin:0 0 1.5rem}',
  '.score{font-size:2.5rem;font-weight:700}',
  'table{border-collapse:collapse;width:100%}',
  'th,td{border:1px solid #ccc;padding:.4rem .6rem;text-align:left;vertical-align:top}',
  'th{background:#f3f3f3}',
  '.pass{color:#0a6b2a;font-weight:700}',
  '.fail{color:#b00020;font-weight:700}',
  'code{font-family:ui-monospace,monospace}',
  'pre{margin:.3rem 0 0;white-space:pre-wrap;word-break:break-all;font:12px/1.35 ui-monospace,monospace;background:#fafafa;padding:.4rem;max-height:20rem;overflow:auto}',
].join('');

/** The Content-Security-Policy of the page (also sent as a header by the route). */
export const REPORT_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; img-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'`;

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

export function renderComplianceHtml(report: ComplianceReport): string {
  const rows = report.results
    .map((r) => {
      const offending =
        r.offending.length === 0 ? '' : `<pre>${escapeHtml(JSON.stringify(r.offending, null, 2))}</pre>`;
      return (
        `<tr><td><code>${escapeHtml(r.id)}</code><br>${escapeHtml(r.title)}</td>` +
        `<td>${escapeHtml(r.severity)}</td>` +
        `<td class="${r.passed ? 'pass' : 'fail'}">${r.passed ? 'PASS' : 'FAIL'}</td>` +
        `<td>${escapeHtml(r.evidence)}${offending}</td></tr>`
      );
    })
    .join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${escapeHtml(REPORT_CSP)}">
<meta name="referrer" content="no-referrer">
<title>Rampart compliance report ${escapeHtml(report.finishedAt)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Rampart compliance report</h1>
<p class="meta">Run <code>${escapeHtml(report.id)}</code> (${escapeHtml(report.trigger)}), ${escapeHtml(report.startedAt)} &ndash; ${escapeHtml(report.finishedAt)}</p>
<p><span class="score">${escapeHtml(String(report.score))}%</span> &mdash; ${report.passed} passed, ${report.failed} failed</p>
<table>
<thead><tr><th>Check</th><th>Severity</th><th>Result</th><th>Evidence</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
</body>
</html>
`;
}
