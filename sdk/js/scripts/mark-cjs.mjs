// Marks dist/cjs as CommonJS for Node.js and TypeScript: the package is "type": "module", so
// without this package.json the .js and .d.ts files there would be read as ES modules.
import { writeFileSync } from 'node:fs';

writeFileSync(new URL('../dist/cjs/package.json', import.meta.url), '{ "type": "commonjs" }\n');
