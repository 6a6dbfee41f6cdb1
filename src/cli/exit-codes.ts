/**
 * The CLI's exit codes, the one place that maps failures to them, and the text `rampart --help` shows.
 * Scripts rely on these numbers: never renumber them.
 */
export const ExitCode = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  CONFLICT: 4,
  AUTH: 5,
  WAIT_FAILED: 6,
  UNREACHABLE: 7,
  VERIFY_FAILED: 8,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = [
  'Exit codes:',
  '  0  success',
  '  1  other error',
  '  2  usage error (bad arguments or options, invalid input)',
  '  3  not found',
  '  4  conflict, illegal state, quota exceeded, untrusted or unavailable (quarantined) image (e.g. the name is taken, the VM cannot do that now)',
  '  5  not authenticated or forbidden',
  '  6  --wait failed (the VM went to error) or timed out',
  '  7  server unreachable',
  '  8  verification failed (an audit record or checkpoint, an image signature, a stored image or a backup does not verify)',
].join('\n');

/** The exit code for an API error answer, by its RAMPART_* code first and its HTTP status otherwise. */
export function exitCodeForApiError(status: number, code: string): ExitCode {
  switch (code) {
    case 'RAMPART_INVALID_INPUT':
    case 'RAMPART_PAYLOAD_TOO_LARGE':
      return ExitCode.USAGE;
    case 'RAMPART_UNAUTHENTICATED':
    case 'RAMPART_FORBIDDEN':
      return ExitCode.AUTH;
    case 'RAMPART_NOT_FOUND':
      return ExitCode.NOT_FOUND;
    case 'RAMPART_CONFLICT':
    case 'RAMPART_ILLEGAL_STATE':
    case 'RAMPART_QUOTA_EXCEEDED':
    case 'RAMPART_UNTRUSTED_IMAGE':
    case 'RAMPART_IMAGE_UNAVAILABLE':
      return ExitCode.CONFLICT;
    case 'RAMPART_IMAGE_INTEGRITY':
    case 'RAMPART_BACKUP_INTEGRITY':
      return ExitCode.VERIFY_FAILED;
  }
  if (code.startsWith('RAMPART_')) return ExitCode.ERROR;
  // Not a Rampart error body (a proxy in between, or an older server): go by the status.
  if (status === 400 || status === 413 || status === 422) return ExitCode.USAGE;
  if (status === 401 || status === 403) return ExitCode.AUTH;
  if (status === 404) return ExitCode.NOT_FOUND;
  if (status === 409) return ExitCode.CONFLICT;
  return ExitCode.ERROR;
}

/**
 * The exit code for a Commander parse outcome (thrown because the program uses `exitOverride`):
 * help and version output succeed, every other parse failure is a usage error.
 */
export function exitCodeForCommander(code: string, commanderExitCode: number): ExitCode {
  if (code === 'commander.helpDisplayed' || code === 'commander.version') return ExitCode.OK;
  if (code === 'commander.help') return commanderExitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  return ExitCode.USAGE;
}
