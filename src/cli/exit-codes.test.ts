import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_CODES, type ErrorCode } from '../api/errors.js';
import {
  ApiError,
  GeneralError,
  UnreachableError,
  AuthError,
  UsageError,
  VerificationError,
  WaitError,
  exitCodeFor,
  formatError,
} from './errors.js';
import { ExitCode, exitCodeForApiError, exitCodeForCommander } from './exit-codes.js';

void describe('exit codes', () => {
  void it('maps every API error code', () => {
    const expected: Record<ErrorCode, ExitCode> = {
      RAMPART_INVALID_INPUT: 2,
      RAMPART_UNAUTHENTICATED: 5,
      RAMPART_FORBIDDEN: 5,
      RAMPART_QUOTA_EXCEEDED: 4,
      RAMPART_UNTRUSTED_IMAGE: 4,
      RAMPART_NOT_FOUND: 3,
      RAMPART_CONFLICT: 4,
      RAMPART_ILLEGAL_STATE: 4,
      RAMPART_PAYLOAD_TOO_LARGE: 2,
      RAMPART_IMAGE_INTEGRITY: 8,
      RAMPART_BACKUP_INTEGRITY: 8,
      RAMPART_IMAGE_UNAVAILABLE: 4,
      RAMPART_RATE_LIMITED: 1,
      RAMPART_INTERNAL: 1,
      RAMPART_HOST_UNAVAILABLE: 1,
      RAMPART_NO_CAPACITY: 1,
      RAMPART_AUDIT_UNAVAILABLE: 1,
      RAMPART_TIMEOUT: 1,
    };
    for (const [code, status] of Object.entries(ERROR_CODES)) {
      assert.equal(exitCodeForApiError(status, code), expected[code as ErrorCode], code);
    }
  });

  void it('falls back to the HTTP status for bodies without a Rampart code', () => {
    assert.equal(exitCodeForApiError(401, 'HTTP_401'), ExitCode.AUTH);
    assert.equal(exitCodeForApiError(403, 'HTTP_403'), ExitCode.AUTH);
    assert.equal(exitCodeForApiError(404, 'HTTP_404'), ExitCode.NOT_FOUND);
    assert.equal(exitCodeForApiError(409, 'HTTP_409'), ExitCode.CONFLICT);
    assert.equal(exitCodeForApiError(400, 'HTTP_400'), ExitCode.USAGE);
    assert.equal(exitCodeForApiError(502, 'HTTP_502'), ExitCode.ERROR);
  });

  void it('maps CLI errors', () => {
    assert.equal(exitCodeFor(new UsageError('x')), 2);
    assert.equal(exitCodeFor(new ApiError(404, 'RAMPART_NOT_FOUND', 'x')), 3);
    assert.equal(exitCodeFor(new WaitError('x')), 6);
    assert.equal(exitCodeFor(new UnreachableError('x')), 7);
    assert.equal(exitCodeFor(new AuthError('x')), 5);
    assert.equal(exitCodeFor(new VerificationError('x')), 8);
    assert.equal(exitCodeFor(new GeneralError('x')), 1);
    assert.equal(exitCodeFor(new Error('x')), 1);
    assert.equal(exitCodeFor('x'), 1);
  });

  void it('maps Commander outcomes: help and version succeed, the rest is a usage error', () => {
    assert.equal(exitCodeForCommander('commander.helpDisplayed', 0), 0);
    assert.equal(exitCodeForCommander('commander.version', 0), 0);
    assert.equal(exitCodeForCommander('commander.help', 0), 0);
    assert.equal(exitCodeForCommander('commander.help', 1), 2);
    assert.equal(exitCodeForCommander('commander.unknownOption', 1), 2);
    assert.equal(exitCodeForCommander('commander.invalidArgument', 1), 2);
  });
});

void describe('formatError', () => {
  void it('prints the API message, code and request id on one line', () => {
    const err = new ApiError(409, 'RAMPART_ILLEGAL_STATE', 'cannot start a VM that is running', 'req-7');
    assert.equal(
      formatError(err),
      'rampart: cannot start a VM that is running (RAMPART_ILLEGAL_STATE, request req-7)',
    );
  });
  void it('leaves out a missing request id', () => {
    assert.equal(
      formatError(new ApiError(502, 'HTTP_502', 'bad gateway')),
      'rampart: bad gateway (HTTP_502)',
    );
  });
  void it('masks secrets and control characters', () => {
    const err = new Error('token s3cret-token was\nrejected \u001b[31m');
    assert.equal(formatError(err, ['s3cret-token']), 'rampart: token *** was?rejected ?[31m');
  });
});
