import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { ApiError } from './errors.js';
import { closeCodeError, splitInput } from './console-stream.js';
import { run } from './program.js';
import { FakeStdin, testIo } from './testing.js';

interface Session {
  auth: string | undefined;
  received: string[];
}

void describe('vm console --follow', () => {
  let server: Server;
  let url: string;
  const sessions: Session[] = [];
  before(async () => {
    server = createServer((_req, res) => {
      res.writeHead(404).end();
    });
    const wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => {
      if (req.url === '/v1/vms/ghost/console/stream') {
        const body = JSON.stringify({
          error: { code: 'RAMPART_NOT_FOUND', message: 'vm "ghost" not found', requestId: 'req-ws' },
        });
        socket.end(
          `HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        );
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
        const session: Session = { auth: req.headers.authorization, received: [] };
        sessions.push(session);
        if (req.url === '/v1/vms/gone/console/stream') {
          ws.close(4404, 'vm "gone" not found');
          return;
        }
        ws.send('boot log\n');
        ws.send(Buffer.from('binary frame\n'));
        ws.on('message', (data: Buffer, isBinary: boolean) => {
          session.received.push(`${isBinary ? 'bin' : 'text'}:${data.toString('utf8')}`);
        });
        if (req.url === '/v1/vms/short/console/stream') setTimeout(() => ws.close(1000, 'bye'), 20);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  void it('prints text and binary frames until the server closes, sending the token', async () => {
    const io = testIo({ RAMPART_URL: url, RAMPART_TOKEN: 'ws-token' });
    assert.equal(await run(['vm', 'console', 'short', '--follow'], io), 0, io.stderr.text);
    assert.equal(io.stdout.text, 'boot log\nbinary frame\n');
    assert.equal(sessions.at(-1)?.auth, 'Bearer ws-token');
  });

  void it('forwards keystrokes from a terminal as text and detaches on Ctrl-]', async () => {
    const stdin = new FakeStdin(true);
    const io = testIo({ RAMPART_URL: url }, stdin);
    const done = run(['vm', 'console', 'web1', '-f'], io);
    // Wait for the connection: the hint goes to stderr once the stream is open.
    while (!io.stderr.text.includes('Ctrl-]')) await new Promise((r) => setTimeout(r, 5));
    stdin.type('ls\r');
    stdin.type(Buffer.from([0x68, 0x69, 0x1d, 0x78]));
    assert.equal(await done, 0, io.stderr.text);
    assert.deepEqual(stdin.rawModes, [true, false]);
    assert.deepEqual(sessions.at(-1)?.received, ['text:ls\r', 'text:hi']);
    assert.match(io.stderr.text, /Detached from web1\./);
  });

  void it('maps a refused upgrade to the API error', async () => {
    const io = testIo({ RAMPART_URL: url });
    assert.equal(await run(['vm', 'console', 'ghost', '--follow'], io), 3);
    assert.equal(io.stderr.text, 'rampart: vm "ghost" not found (RAMPART_NOT_FOUND, request req-ws)\n');
  });

  void it('maps a 4404 close to not found', async () => {
    const io = testIo({ RAMPART_URL: url });
    assert.equal(await run(['vm', 'console', 'gone', '--follow'], io), 3);
    assert.match(io.stderr.text, /vm "gone" not found/);
  });

  void it('splits long input and maps close codes', () => {
    const chunks = splitInput('a'.repeat(2500));
    assert.deepEqual(
      chunks.map((c) => c.length),
      [1024, 1024, 452],
    );
    const emoji = splitInput('a'.repeat(1023) + '😀');
    assert.deepEqual(
      emoji.map((c) => c.length),
      [1023, 2],
    );
    const err = closeCodeError(4403, 'forbidden', 'web1');
    assert.ok(err instanceof ApiError);
    assert.equal(err.exitCode, 5);
  });
});
