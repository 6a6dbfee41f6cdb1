/** JSON logging (pino) with secret-bearing fields redacted wherever they appear. */
import { pino, type Logger } from 'pino';

export type { Logger };

export const REDACTED_PATHS = [
  'token',
  'password',
  'authorization',
  'req.headers.authorization',
  '*.token',
  '*.password',
  '*.authorization',
];

export function createLogger(name: string, level = process.env.RAMPART_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } });
}
