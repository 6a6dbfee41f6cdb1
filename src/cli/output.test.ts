import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  Output,
  colorEnabled,
  formatAge,
  formatBytes,
  formatKeyValue,
  formatMiB,
  formatMiBOf,
  formatTable,
  sanitize,
  shortId,
} from './output.js';
import { capture } from './testing.js';

void describe('formatTable', () => {
  void it('aligns columns with three spaces and no trailing spaces', () => {
    const text = formatTable(
      ['NAME', 'STATE', 'AGE'],
      [
        ['web1', 'running', '5m'],
        ['database-2', 'stopped', '3d'],
      ],
    );
    assert.equal(
      text,
      ['NAME         STATE     AGE', 'web1         running   5m', 'database-2   stopped   3d', ''].join('\n'),
    );
  });

  void it('prints only the header for an empty list', () => {
    assert.equal(formatTable(['A', 'B'], []), 'A   B\n');
  });

  void it('colours cells only when asked, without changing the alignment', () => {
    const rows = [[{ text: 'running', color: 'green' as const }, 'x']];
    assert.equal(formatTable(['STATE', 'X'], rows, false), 'STATE     X\nrunning   x\n');
    const colored = formatTable(['STATE', 'X'], rows, true);
    assert.equal(colored, 'STATE     X\n\u001b[32mrunning\u001b[0m   x\n');
  });

  void it('neutralises control characters from the server', () => {
    const text = formatTable(['NAME'], [['evil\u001b[2J\nname']]);
    assert.equal(text, 'NAME\nevil?[2J?name\n');
    assert.ok(!text.includes('\u001b'));
  });
});

void describe('formatKeyValue', () => {
  void it('aligns the values', () => {
    assert.equal(
      formatKeyValue([
        ['Name', 'web1'],
        ['Restart policy', 'never'],
      ]),
      'Name:            web1\nRestart policy:  never\n',
    );
  });
});

void describe('small formatters', () => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  void it('formats ages', () => {
    assert.equal(formatAge('2026-01-01T11:59:30Z', now), '30s');
    assert.equal(formatAge('2026-01-01T11:55:00Z', now), '5m');
    assert.equal(formatAge('2026-01-01T09:00:00Z', now), '3h');
    assert.equal(formatAge('2025-12-25T12:00:00Z', now), '7d');
    assert.equal(formatAge('2026-01-02T00:00:00Z', now), '0s');
    assert.equal(formatAge(null, now), '-');
    assert.equal(formatAge('not a date', now), '-');
  });
  void it('formats sizes', () => {
    assert.equal(formatMiB(512), '512 MiB');
    assert.equal(formatMiB(2048), '2 GiB');
    assert.equal(formatMiB(1536), '1.5 GiB');
    assert.equal(formatMiBOf(1536, 7680), '1.5/7.5 GiB');
    assert.equal(formatMiBOf(0, 15_360), '0/15 GiB');
    assert.equal(formatMiBOf(256, 512), '256/512 MiB');
    assert.equal(formatMiBOf(2048, 4 * 1024 * 1024), '0/4 TiB');
    assert.equal(formatBytes(100), '100 B');
    assert.equal(formatBytes(12_900_000), '12.3 MiB');
  });
  void it('shortens ids', () => {
    assert.equal(shortId('cccccccc-2222-4333-8444-555555555555'), 'cccccccc');
    assert.equal(shortId(null), '-');
  });
  void it('sanitizes', () => {
    assert.equal(sanitize('a\u0007b\u009bc\u007f'), 'a?b?c?');
  });
});

void describe('Output', () => {
  void it('uses colours only on a terminal without NO_COLOR', () => {
    assert.equal(colorEnabled(capture(false), {}), false);
    assert.equal(colorEnabled(capture(true), {}), true);
    assert.equal(colorEnabled(capture(true), { NO_COLOR: '1' }), false);
    assert.equal(colorEnabled(capture(true), { TERM: 'dumb' }), false);
  });
  void it('prints JSON on stdout and progress on stderr', () => {
    const stdout = capture();
    const stderr = capture();
    const out = new Output(stdout, stderr, 'json', {});
    out.printJson({ items: [] });
    out.progress('web1: starting');
    assert.equal(stdout.text, '{\n  "items": []\n}\n');
    assert.equal(stderr.text, 'web1: starting\n');
  });
});
