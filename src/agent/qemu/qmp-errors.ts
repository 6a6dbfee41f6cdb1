/**
 * Errors raised by the QMP client (qmp-client.ts). They are separate classes so callers can tell a
 * command QEMU refused (QmpCommandError) from a monitor that stopped answering (QmpTimeoutError), a
 * connection that went away (QmpDisconnectedError) and a peer that does not speak QMP (QmpProtocolError).
 */

/** Base class of every QMP client error. */
export class QmpError extends Error {
  override name = 'QmpError';
}

/** QEMU answered a command with `{"error": {"class": ..., "desc": ...}}`. */
export class QmpCommandError extends QmpError {
  override name = 'QmpCommandError';
  constructor(
    /** QMP error class, e.g. `GenericError`, `CommandNotFound`, `DeviceNotFound`. */
    readonly errorClass: string,
    /** QEMU's human-readable description. */
    readonly desc: string,
    /** The QMP command that failed. */
    readonly command: string,
  ) {
    super(`QMP command ${command} failed: ${errorClass}: ${desc}`);
  }
}

/** No reply arrived in time (a command, or the greeting/handshake while connecting). */
export class QmpTimeoutError extends QmpError {
  override name = 'QmpTimeoutError';
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
    message = `QMP command ${command} timed out after ${timeoutMs} ms`,
  ) {
    super(message);
  }
}

/** The monitor socket could not be opened, or closed/failed while a command was pending or being sent. */
export class QmpDisconnectedError extends QmpError {
  override name = 'QmpDisconnectedError';
}

/** The peer sent something that is not QMP (bad greeting, unparseable handshake line). */
export class QmpProtocolError extends QmpError {
  override name = 'QmpProtocolError';
}
