/** One connection attempt to a unix socket: the socket once connected, or null (absent, refused). */
import { connect, type Socket } from 'node:net';

export function tryConnect(path: string): Promise<Socket | null> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => resolve(socket));
    socket.once('error', () => {
      socket.destroy();
      resolve(null);
    });
  });
}
