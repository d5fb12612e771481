// The package as a user gets it: packed from a clone that has never been built (npm pack runs
// prepare, which builds dist/), then installed from the tarball into a scratch ES module project
// and a scratch CommonJS TypeScript project, which import it, type-check against it and run.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const sdkRoot = resolve(fileURLToPath(import.meta.url), '../..');
const tsc = join(sdkRoot, 'node_modules', 'typescript', 'bin', 'tsc');
const scratch = mkdtempSync(join(tmpdir(), 'herald-sdk-pack-'));
let tarball;

// Runs a command quietly in dir (npm without network: the tarball has no dependencies).
function sh(dir, cmd, args) {
  return execFileSync(cmd, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_offline: 'true' } });
}

function project(name, packageJSON) {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, ...packageJSON }));
  sh(dir, 'npm', ['install', '--no-save', '--no-package-lock', tarball]);
  return dir;
}

before(() => {
  // A clean copy of what git holds: no dist/, no node_modules (typescript comes from ours).
  const clone = join(scratch, 'clone');
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.cjs.json', 'README.md', 'src', 'scripts']) {
    cpSync(join(sdkRoot, f), join(clone, f), { recursive: true });
  }
  symlinkSync(join(sdkRoot, 'node_modules'), join(clone, 'node_modules'));
  const name = sh(clone, 'npm', ['pack', '--silent']).trim().split('\n').pop();
  tarball = join(clone, name);
});
after(() => rmSync(scratch, { recursive: true, force: true }));

test('package: the tarball holds both builds and their types', () => {
  const list = sh(scratch, 'tar', ['-tzf', tarball]).split('\n');
  for (const f of ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/cjs/index.js',
    'package/dist/cjs/index.d.ts', 'package/dist/cjs/package.json']) {
    assert.ok(list.includes(f), `${f} missing from the tarball: ${list.join(' ')}`);
  }
});

test('package: an ES module project imports it', () => {
  const dir = project('esm-app', { type: 'module' });
  writeFileSync(join(dir, 'main.mjs'), `import { HeraldClient } from '@herald/client';
if (typeof HeraldClient !== 'function') throw new Error('no HeraldClient');
console.log('esm ok');
`);
  assert.equal(sh(dir, process.execPath, ['main.mjs']).trim(), 'esm ok');
});

test('package: a CommonJS TypeScript project type-checks and requires it', () => {
  const dir = project('cjs-app', { type: 'commonjs' });
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'commonjs', moduleResolution: 'node10', target: 'ES2022', lib: ['ES2022', 'DOM'],
      types: [], strict: true, outDir: 'out' },
    files: ['main.ts'],
  }));
  writeFileSync(join(dir, 'main.ts'), `import { HeraldClient } from '@herald/client';
const client: HeraldClient = new HeraldClient({ url: 'http://127.0.0.1:9', getToken: async () => 'x' });
client.close();
console.log('cjs ok');
`);
  // TS1479 here meant the types described an ES module a CommonJS project cannot require.
  sh(dir, process.execPath, [tsc, '--noEmit', '-p', '.']);
  sh(dir, process.execPath, [tsc, '-p', '.']);
  assert.ok(readdirSync(join(dir, 'out')).includes('main.js'));
  assert.equal(sh(dir, process.execPath, ['out/main.js']).trim(), 'cjs ok');
  // And plain require() from Node.js.
  assert.equal(sh(dir, process.execPath, ['-e', "console.log(typeof require('@herald/client').HeraldClient)"]).trim(), 'function');
});

test('package: node16 module resolution in a CommonJS project finds the require types', () => {
  const dir = project('cjs-node16-app', { type: 'commonjs' });
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'node16', moduleResolution: 'node16', target: 'ES2022', lib: ['ES2022', 'DOM'],
      types: [], strict: true, noEmit: true },
    files: ['main.ts'],
  }));
  writeFileSync(join(dir, 'main.ts'), `import { HeraldClient } from '@herald/client';\nexport const c: typeof HeraldClient = HeraldClient;\n`);
  sh(dir, process.execPath, [tsc, '-p', '.']);
});
