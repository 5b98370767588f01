// Bundles the browser check page of `webml convert` (web/check/) with esbuild. The builder
// (builder/model_check.py) calls
//   node web/build-check.mjs OUTDIR
// and gets a JSON summary of the files written on stdout.
import {copyFile, mkdir} from 'node:fs/promises';
import {dirname, join, relative} from 'node:path';
import {fileURLToPath} from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, 'node_modules');
const WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'];
const outdir = process.argv[2];

const result = await esbuild.build({
  entryPoints: {check: join(here, 'check', 'check.js')},
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  logLevel: 'warning',
  legalComments: 'none',
  metafile: true,
  outdir,
});
await copyFile(join(here, 'check', 'index.html'), join(outdir, 'index.html'));
await mkdir(join(outdir, 'runtime'), {recursive: true});
for (const file of WASM_FILES) {
  await copyFile(join(modules, '@tensorflow', 'tfjs-backend-wasm', 'dist', file), join(outdir, 'runtime', file));
}
const files = [
  ...Object.keys(result.metafile.outputs).map((f) => relative(outdir, f)),
  'index.html',
  ...WASM_FILES.map((f) => `runtime/${f}`),
];
process.stdout.write(JSON.stringify({files}));
