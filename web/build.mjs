// Bundles the app for one build with esbuild. The builder (builder/bundle.py) calls
//   node web/build.mjs CONFIG.json
// where CONFIG holds {outdir, backends, kernels, minify}. ``kernels`` is null to register every
// kernel of each backend, or the list of kernel names the model runs, so that only those kernels
// are bundled. Prints a JSON summary (files written, bytes per input package) on stdout.
import {copyFile, mkdir, readFile, writeFile} from 'node:fs/promises';
import {existsSync} from 'node:fs';
import {dirname, join, relative} from 'node:path';
import {fileURLToPath} from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, 'node_modules');
const BACKENDS = ['wasm', 'webgl', 'webgpu', 'cpu'];
// Kernels the app itself can reach outside the model graph (dtype casts, tensor copies, reshapes).
const ALWAYS_KERNELS = ['Cast', 'Identity', 'Reshape'];
const WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'];

const config = JSON.parse(await readFile(process.argv[2], 'utf8'));
const outdir = config.outdir;
const missingKernels = {};

function kernelFile(backend, kernel) {
  return join(modules, '@tensorflow', `tfjs-backend-${backend}`, 'dist', 'kernels', `${kernel}.js`);
}

function backendSupportCheck(backend) {
  if (backend === 'webgl') {
    return `export async function supported() {
  const canvas = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(1, 1) : document.createElement('canvas');
  const gl = canvas.getContext('webgl2') || canvas.getContext('webgl');
  return gl ? {ok: true} : {ok: false, reason: 'WebGL is not available in this browser (no GPU or WebGL disabled)'};
}`;
  }
  if (backend === 'webgpu') {
    return `export async function supported() {
  if (!('gpu' in navigator)) return {ok: false, reason: 'WebGPU is not available in this browser (navigator.gpu is missing)'};
  try {
    const adapter = await navigator.gpu.requestAdapter();
    return adapter ? {ok: true} : {ok: false, reason: 'WebGPU found no GPU adapter'};
  } catch (error) {
    return {ok: false, reason: 'WebGPU adapter request failed: ' + error.message};
  }
}`;
  }
  if (backend === 'wasm') {
    return `export async function supported() {
  return typeof WebAssembly === 'object' ? {ok: true} : {ok: false, reason: 'WebAssembly is not available in this browser'};
}`;
  }
  return '';
}

function backendModule(backend) {
  if (!config.backends.includes(backend)) {
    return `export const available = false;
export const reason = ${JSON.stringify(`not included in this build (app.backends = ${JSON.stringify(config.backends)})`)};`;
  }
  const pkg = `@tensorflow/tfjs-backend-${backend}`;
  const lines = [];
  if (config.kernels === null) {
    lines.push(`import '${pkg}/dist/base';`, `import '${pkg}/dist/register_all_kernels';`);
  } else {
    const wanted = [...new Set([...config.kernels, ...ALWAYS_KERNELS])].sort();
    const missing = wanted.filter((k) => !existsSync(kernelFile(backend, k)) && !ALWAYS_KERNELS.includes(k));
    if (missing.length) {
      missingKernels[backend] = missing;
      return `export const available = false;
export const reason = ${JSON.stringify(`the ${backend} backend has no kernel for ${missing.join(', ')}`)};`;
    }
    lines.push(`import '${pkg}/dist/base';`, `import {registerKernel} from '@tensorflow/tfjs-core';`);
    wanted.filter((k) => existsSync(kernelFile(backend, k))).forEach((kernel, i) => {
      lines.push(`import * as k${i} from '${pkg}/dist/kernels/${kernel}';`);
      lines.push(`for (const value of Object.values(k${i})) if (value && value.kernelName && value.backendName) registerKernel(value);`);
    });
  }
  lines.push('export const available = true;');
  if (backend === 'wasm') {
    lines.push(`import {setWasmPaths, getThreadsCount} from '${pkg}/dist/base';`);
    lines.push(`import {env} from '@tensorflow/tfjs-core';`);
    lines.push('export function configure({wasmBase}) { setWasmPaths(wasmBase); }');
    lines.push('export function threads() { return getThreadsCount(); }');
    lines.push("export async function simd() { return env().getAsync('WASM_HAS_SIMD_SUPPORT'); }");
  }
  lines.push(backendSupportCheck(backend));
  return lines.join('\n');
}

const backendPlugin = {
  name: 'webml-backends',
  setup(build) {
    build.onResolve({filter: /^webml:backend\//}, (args) => ({path: args.path.slice('webml:backend/'.length), namespace: 'webml-backend'}));
    build.onLoad({filter: /.*/, namespace: 'webml-backend'}, (args) => ({
      contents: backendModule(args.path),
      resolveDir: here,
      loader: 'js',
    }));
  },
};

const common = {
  bundle: true,
  minify: config.minify !== false,
  target: 'es2020',
  logLevel: 'warning',
  // License texts of the bundled packages go to one licenses.txt instead of comments per chunk.
  legalComments: 'none',
  metafile: true,
};

const app = await esbuild.build({
  ...common,
  entryPoints: {app: join(here, 'src', 'main.js')},
  format: 'esm',
  splitting: true,
  outdir,
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  plugins: [backendPlugin],
});
const boot = await esbuild.build({
  ...common,
  entryPoints: {boot: join(here, 'src', 'boot.js')},
  format: 'iife',
  outdir,
});
const css = await esbuild.build({...common, entryPoints: {app: join(here, 'src', 'app.css')}, outdir});

const copied = [];
if (config.backends.includes('wasm')) {
  await mkdir(join(outdir, 'runtime'), {recursive: true});
  for (const file of WASM_FILES) {
    await copyFile(join(modules, '@tensorflow', 'tfjs-backend-wasm', 'dist', file), join(outdir, 'runtime', file));
    copied.push(`runtime/${file}`);
  }
}

const packages = {};
for (const result of [app, boot]) {
  for (const output of Object.values(result.metafile.outputs)) {
    for (const [input, info] of Object.entries(output.inputs)) {
      const match = input.match(/node_modules\/(@[^/]+\/[^/]+|[^/]+)/);
      const name = match ? match[1] : 'webml';
      packages[name] = (packages[name] || 0) + info.bytesInOutput;
    }
  }
}
const notices = [];
for (const name of Object.keys(packages).sort()) {
  if (name === 'webml') continue;
  const licensePath = ['LICENSE', 'LICENSE.md', 'LICENSE.txt', 'license'].map((f) => join(modules, name, f)).find((p) => existsSync(p));
  const pkg = JSON.parse(await readFile(join(modules, name, 'package.json'), 'utf8'));
  notices.push(`${name} ${pkg.version} (${pkg.license || 'see its package'})\n\n${licensePath ? await readFile(licensePath, 'utf8') : 'No license file shipped in the package.'}`);
}
await writeFile(join(outdir, 'licenses.txt'), notices.join('\n\n' + '='.repeat(72) + '\n\n'));
copied.push('licenses.txt');

const files = [app, boot, css].flatMap((r) => Object.keys(r.metafile.outputs)).map((f) => relative(outdir, f));
process.stdout.write(JSON.stringify({files: [...files, ...copied], packages, missingKernels}));
