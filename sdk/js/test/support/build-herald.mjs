// Builds the herald binary the tests run (go build ./cmd/herald from the repository root) into
// a temporary directory, once per `npm test`. Run directly, it prints the binary's path.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const heraldBin = process.env.HERALD_BIN || join(tmpdir(), 'herald-sdk-js-test', 'herald');

function goBinary() {
  for (const dir of (process.env.PATH || '').split(':')) {
    if (dir && existsSync(join(dir, 'go'))) return join(dir, 'go');
  }
  if (existsSync('/usr/local/go/bin/go')) return '/usr/local/go/bin/go';
  return 'go';
}

export function buildHerald() {
  if (process.env.HERALD_BIN) return heraldBin;
  mkdirSync(dirname(heraldBin), { recursive: true });
  execFileSync(goBinary(), ['build', '-o', heraldBin, './cmd/herald'], { cwd: repoRoot, stdio: 'inherit' });
  return heraldBin;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const t = Date.now();
  buildHerald();
  console.log(`built ${heraldBin} in ${Date.now() - t} ms`);
}
