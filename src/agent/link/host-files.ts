/** The files of a joined host in the agent's data directory (written at join, replaced at renewal). */
export const HOST_KEY_FILE = 'host.key';
export const HOST_CERT_FILE = 'host.crt';
export const CA_CERT_FILE = 'ca.crt';
export const ENDPOINT_FILE = 'server-endpoint';
