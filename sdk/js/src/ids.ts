// Message ids are `<ms>-<seq>` (both unsigned decimal, no leading zeros), or `0` for "before
// everything". The client compares them only to drop a message it already delivered, which can
// happen when two transports overlap during an upgrade; ids it cannot read are never dropped.

const ID = /^(\d+)(?:-(\d+))?$/;

function cmpDecimal(a: string, b: string): number {
  a = a.replace(/^0+(?=\d)/, '');
  b = b.replace(/^0+(?=\d)/, '');
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Compares two ids: -1, 0, 1, or undefined when either is not an id the client can read. */
export function compareIds(a: string, b: string): number | undefined {
  const x = ID.exec(a);
  const y = ID.exec(b);
  if (!x || !y) return undefined;
  return cmpDecimal(x[1]!, y[1]!) || cmpDecimal(x[2] ?? '0', y[2] ?? '0');
}

/** Splits a multi-channel cursor (one id per channel, comma-joined) for n channels. */
export function splitCursor(cursor: string, n: number): string[] | undefined {
  const parts = cursor.split(',');
  if (parts.length !== n || parts.some((p) => !ID.test(p))) return undefined;
  return parts;
}

const CHANNEL = /^[A-Za-z0-9_.:@/=+-]{1,255}$/;

/** Whether a channel name is valid for herald: 1-255 of `A-Z a-z 0-9 _ . : @ / = + -`. */
export function validChannel(name: string): boolean {
  return CHANNEL.test(name);
}
