// The event-stream parser, fed the way a network delivers: in arbitrary pieces.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SSEParser } from '../dist/index.js';

function parse(chunks) {
  const blocks = [];
  const retries = [];
  const p = new SSEParser((b) => blocks.push(b), (ms) => retries.push(ms));
  const enc = new TextEncoder();
  for (const c of chunks) p.feed(typeof c === 'string' ? enc.encode(c) : c);
  return { blocks, retries, last: p.lastEventId };
}

test('fields, comments, ids and retry, in one piece and split at every byte', () => {
  const stream =
    '\uFEFFretry: 2000\n\n' +
    'id: 0-0,0-0\n\n' +
    ': ping\n\n' +
    'id: 5-0,0-0\ndata: {"channel":"a","id":"5-0","data":1}\n\n' +
    'event: herald.gap\ndata: {"channel":"b"}\n\n' +
    'event: status\r\nid: 5-0,6-0\r\ndata: line1\r\ndata:line2\r\n\r\n' +
    'data: cr\rid: bad\0id\r\r' +
    'retry: x\nfoo: bar\ndata\n\n';
  const whole = parse([stream]);
  const bytes = new TextEncoder().encode(stream);
  const split = parse(Array.from(bytes, (b) => new Uint8Array([b])));
  for (const r of [whole, split]) {
    assert.deepEqual(r.retries, [2000]);
    assert.deepEqual(r.blocks, [
      { type: 'message', data: null, id: '0-0,0-0' },
      { type: 'message', data: '{"channel":"a","id":"5-0","data":1}', id: '5-0,0-0' },
      { type: 'herald.gap', data: '{"channel":"b"}' },
      { type: 'status', data: 'line1\nline2', id: '5-0,6-0' },
      { type: 'message', data: 'cr' },
      { type: 'message', data: '' },
    ]);
    assert.equal(r.last, '5-0,6-0');
  }
});

test('a multi-byte character split across chunks', () => {
  const bytes = new TextEncoder().encode('data: héllo ✓\n\n');
  const r = parse([bytes.slice(0, 8), bytes.slice(8, 15), bytes.slice(15)]);
  assert.deepEqual(r.blocks, [{ type: 'message', data: 'héllo ✓' }]);
});

test('a block with neither data nor id dispatches nothing', () => {
  assert.deepEqual(parse(['event: x\n\n', ':c\n\n']).blocks, []);
});
