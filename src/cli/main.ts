#!/usr/bin/env node
/** The `rampart` executable: runs the CLI on the process's arguments and streams. */
import { run } from './program.js';

// `rampart vm list | head`: a closed pipe is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
});
