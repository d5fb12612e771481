// The README's Node.js quick start, run as written against a real herald.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Herald, mintToken, waitFor } from './support/herald.mjs';

const sdkRoot = resolve(fileURLToPath(import.meta.url), '../..');
const herald = new Herald();
before(() => herald.start());
after(() => herald.stop());

test('README: the Node.js quick start receives a message', { timeout: 20_000 }, async () => {
  const readme = readFileSync(join(sdkRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Quick start: Node.js'));
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(code?.includes("from '@herald/client'"), 'the quick start imports the package by name');
  // Inside the package directory, so the package resolves its own name and the ws devDependency.
  const file = join(sdkRoot, 'test', `.readme-quickstart-${process.pid}.mjs`);
  writeFileSync(file, code);
  const child = spawn(process.execPath, [file], {
    env: { ...process.env, HERALD_URL: herald.url, HERALD_TOKEN: mintToken({ subscribe: ['*'] }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  try {
    await waitFor(() => out.includes('connected over websocket'), 10_000, 'the quick start to connect');
    await waitFor(async () => {
      await herald.publish('demo', { hello: 'world' });
      return out.includes('message demo ');
    }, 10_000, 'the message');
    assert.match(out, /message demo \d+-\d+ \{"hello":"world"\}/);
    child.kill('SIGINT');
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0, 'client.close() lets the process end: no timer or socket left behind\n' + out);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(file, { force: true });
  }
});
