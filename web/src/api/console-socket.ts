/**
 * The live serial console of a VM over WebSocket. Browsers cannot set an Authorization header on a
 * WebSocket, so the session token travels as a subprotocol: the client offers
 * ["rampart.v1", "bearer.<token>"] and the server answers rampart.v1 (never the token).
 */
import { withQuery } from './client.js';
import { getSession } from './session.js';

export interface ConsoleHandlers {
  onData: (text: string) => void;
  onState: (state: 'connecting' | 'open' | 'closed', reason?: string) => void;
}

export function openConsole(
  vmRef: string,
  handlers: ConsoleHandlers,
): { send: (text: string) => void; close: () => void } {
  const session = getSession();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${location.host}${withQuery(`/v1/vms/${encodeURIComponent(vmRef)}/console/stream`)}`;
  const protocols = ['rampart.v1', ...(session ? [`bearer.${session.token}`] : [])];
  const socket = new WebSocket(url, protocols);
  socket.binaryType = 'arraybuffer';
  const decoder = new TextDecoder();
  handlers.onState('connecting');
  socket.onopen = () => handlers.onState('open');
  socket.onmessage = (event: MessageEvent<ArrayBuffer | string>) => {
    handlers.onData(
      typeof event.data === 'string' ? event.data : decoder.decode(event.data, { stream: true }),
    );
  };
  socket.onclose = (event) => handlers.onState('closed', event.reason || `code ${event.code}`);
  return {
    send: (text) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(text);
    },
    close: () => socket.close(),
  };
}
