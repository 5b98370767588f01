// Bundles the app for one build with esbuild. The builder (builder/bundle.py) calls
//   node web/build.mjs CONFIG.json
// where CONFIG contains {outdir, modelDir, backends, selectKernels, minify, workDir} and, for
// studying the bundle, optionally metafile (a path to write esbuild's metafile of app.js to).
//
// With selectKernels (the default) the runtime is cut to what the converted model in modelDir
// needs: the converter's op table is replaced by a module with only the model's ops, and each
// backend chunk registers only the kernels the model ran in a Node.js profile (web/tools/select.mjs).
// Without it every op and every kernel of each backend is bundled.
//
// Prints a JSON summary on stdout: files written, bytes per input package, the graph ops,
// converter ops and kernels selected, kernels a backend lacks, and the size of what ships.
import {copyFile, mkdir, readFile, writeFile} from 'node:fs/promises';
import {existsSync} from 'node:fs';
import {dirname, join, relative} from 'node:path';
import {fileURLToPath} from 'node:url';
import * as esbuild from 'esbuild';
import {converterOps, kernelModules, opListPlugin, opsModuleSource, opsPlugin, profileKernels, readGraphModel} from './tools/select.mjs';
import {measureBundle} from './tools/sizes.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, 'node_modules');
const BACKENDS = ['wasm', 'webgl', 'webgpu', 'cpu'];
// Kernels that tfjs-core and the converter can dispatch outside what a profile of the model
// shows: dtype casts of inputs, clones of kept tensors and reshapes of outputs.
const ALWAYS_KERNELS = ['Cast', 'Identity', 'Reshape'];
const WASM_FILES = {
  plain: 'tfjs-backend-wasm.wasm',
  simd: 'tfjs-backend-wasm-simd.wasm',
  'threaded-simd': 'tfjs-backend-wasm-threaded-simd.wasm',
};

const config = JSON.parse(await readFile(process.argv[2], 'utf8'));
const outdir = config.outdir;

async function main() {
  let selection = {graphOps: null, converterOps: null, kernels: null, opsSource: null};
  if (config.selectKernels) selection = await selectForModel(config.modelDir);
  const missingKernels = {};
  const backendSources = {};
  for (const backend of BACKENDS) {
    const {source, missing} = backendModule(backend, selection.kernels);
    backendSources[backend] = source;
    if (missing.length) missingKernels[backend] = missing;
  }

  const common = {
    bundle: true,
    minify: config.minify !== false,
    target: 'es2020',
    logLevel: 'warning',
    // The converter's executors for ops this model does not use read names the reduced ops
    // module does not export; those reads are never reached.
    logOverride: {'import-is-undefined': 'silent'},
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
    plugins: [coreIndexPlugin(), opsPlugin(selection.opsSource, here), opListPlugin(selection.graphOps), backendPlugin(backendSources)],
  });
  if (config.metafile) await writeFile(config.metafile, JSON.stringify(app.metafile));
  const boot = await esbuild.build({...common, entryPoints: {boot: join(here, 'src', 'boot.js')}, format: 'iife', outdir,
    plugins: [bootMessagesPlugin()]});
  const css = await esbuild.build({...common, entryPoints: {app: join(here, 'src', 'app.css')}, outdir});

  const copied = [];
  const wasmFiles = {};
  if (config.backends.includes('wasm')) {
    await mkdir(join(outdir, 'runtime'), {recursive: true});
    for (const [variant, file] of Object.entries(WASM_FILES)) {
      await copyFile(join(modules, '@tensorflow', 'tfjs-backend-wasm', 'dist', file), join(outdir, 'runtime', file));
      copied.push(`runtime/${file}`);
      wasmFiles[variant] = `runtime/${file}`;
    }
  }
  copied.push(await writeLicenses([app, boot]));

  const files = [app, boot, css].flatMap((r) => Object.keys(r.metafile.outputs)).map((f) => relative(outdir, f));
  const sizes = await measureBundle({outdir, metafile: app.metafile, bootFiles: Object.keys(boot.metafile.outputs), wasmFiles,
    backends: config.backends, fullBundle: join(modules, '@tensorflow', 'tfjs', 'dist', 'tf.min.js')});
  return {
    files: [...files, ...copied],
    packages: packageBytes([app, boot]),
    missingKernels,
    graphOps: selection.graphOps || [],
    converterOps: selection.converterOps,
    kernels: selection.kernels,
    wasmFiles,
    sizes,
  };
}

async function selectForModel(modelDir) {
  const {manifest, graphOps} = await readGraphModel(modelDir);
  const ops = converterOps(modules, graphOps);
  const opsSource = opsModuleSource(modules, ops);
  const workDir = config.workDir || outdir;
  const profiled = await profileKernels({modules, here, modelDir, manifest, graphOps, opsSource, workDir});
  const kernels = [...new Set([...profiled, ...ALWAYS_KERNELS])].sort();
  return {graphOps, converterOps: ops, kernels, opsSource};
}

// tfjs-core's index.js registers every optimizer class for training. A page that only runs a
// graph model needs base_side_effects (engine, flags, platforms) and the exports of base.js.
function coreIndexPlugin() {
  return {
    name: 'webml-core-without-optimizers',
    setup(build) {
      build.onResolve({filter: /^@tensorflow\/tfjs-core$/}, () => ({path: 'tfjs-core', namespace: 'webml-core'}));
      build.onLoad({filter: /.*/, namespace: 'webml-core'}, () => ({
        contents: "import '@tensorflow/tfjs-core/dist/base_side_effects';\nexport * from '@tensorflow/tfjs-core/dist/base';\n",
        resolveDir: here,
        loader: 'js',
      }));
    },
  };
}

// boot.js runs on every page load but only shows the file:// notice, so it carries only the
// messages that notice uses.
function bootMessagesPlugin() {
  return {
    name: 'webml-boot-messages',
    setup(build) {
      build.onLoad({filter: /src[\\/]messages\.json$/}, async (args) => {
        const tables = JSON.parse(await readFile(args.path, 'utf8'));
        const kept = {};
        for (const [language, table] of Object.entries(tables)) {
          kept[language] = Object.fromEntries(Object.entries(table).filter(([key]) => key.startsWith('file.')));
        }
        return {contents: JSON.stringify(kept), loader: 'json'};
      });
    },
  };
}

function backendPlugin(sources) {
  return {
    name: 'webml-backends',
    setup(build) {
      build.onResolve({filter: /^webml:backend\//}, (args) => ({path: args.path.slice('webml:backend/'.length), namespace: 'webml-backend'}));
      build.onLoad({filter: /.*/, namespace: 'webml-backend'}, (args) => ({contents: sources[args.path], resolveDir: here, loader: 'js'}));
    },
  };
}

/**
 * Source of the ``webml:backend/NAME`` module: registers the backend with the kernels the model
 * needs, or exports ``available = false`` with a coded reason when the backend was left out of
 * the build or lacks a kernel. Returns {source, missing}.
 */
function backendModule(backend, kernels) {
  if (!config.backends.includes(backend)) {
    return {missing: [], source: unavailable('backend-not-built', {backends: config.backends.join(', ')},
      `not included in this build (app.backends = ${JSON.stringify(config.backends)})`)};
  }
  const pkg = `@tensorflow/tfjs-backend-${backend}`;
  const lines = [`import '${pkg}/dist/base';`, `import {env, getKernel, registerKernel} from '@tensorflow/tfjs-core';`];
  let missing = [];
  if (kernels === null) {
    lines.push(`import '${pkg}/dist/register_all_kernels';`);
  } else {
    const files = kernelModules(modules, backend);
    missing = kernels.filter((kernel) => !files.has(kernel));
    if (missing.length) {
      return {missing, source: unavailable('kernel-unsupported', {kernels: missing.join(', ')},
        `TF.js ${backend} has no kernel for ${missing.join(', ')}`)};
    }
    kernels.forEach((kernel, i) => {
      lines.push(`import * as k${i} from '${pkg}/dist/kernels/${files.get(kernel)}';`);
      lines.push(`registerFrom(k${i}, ${JSON.stringify(kernel)});`);
    });
    lines.push(`function registerFrom(module, name) {
  for (const value of Object.values(module)) {
    if (value && value.kernelName === name && value.backendName === ${JSON.stringify(backend)}) registerKernel(value);
  }
}`);
  }
  // A kernel that did not register fails here, when the backend loads, rather than at the first prediction.
  lines.push(`export const kernels = ${JSON.stringify(kernels)};`);
  lines.push(`const unregistered = (kernels || []).filter((name) => !getKernel(name, ${JSON.stringify(backend)}));`);
  lines.push('export const available = unregistered.length === 0;');
  lines.push(`export const code = available ? null : 'kernel-missing';`);
  lines.push(`export const params = {kernels: unregistered.join(', ')};`);
  lines.push(`export const reason = available ? null : 'kernel(s) not registered: ' + unregistered.join(', ');`);
  if (backend === 'wasm') {
    lines.push(`import {setWasmPaths, getThreadsCount} from '${pkg}/dist/base';`);
    lines.push('export function configure({wasmBase}) { setWasmPaths(wasmBase); }');
    lines.push('export function threads() { return getThreadsCount(); }');
    // The same rule as tfjs-backend-wasm's getPathToWasmBinary: threads need SIMD as well.
    lines.push(`export async function variant() {
  const [simd, threads] = await Promise.all([env().getAsync('WASM_HAS_SIMD_SUPPORT'), env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')]);
  if (simd && threads) return 'threaded-simd';
  return simd ? 'simd' : 'plain';
}`);
  }
  lines.push(supportCheck(backend));
  return {missing, source: lines.join('\n')};
}

function unavailable(code, params, reason) {
  return `export const available = false;
export const code = ${JSON.stringify(code)};
export const params = ${JSON.stringify(params)};
export const reason = ${JSON.stringify(reason)};`;
}

function supportCheck(backend) {
  if (backend === 'webgl') {
    return `export async function supported() {
  const canvas = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(1, 1) : document.createElement('canvas');
  const gl = canvas.getContext('webgl2') || canvas.getContext('webgl');
  return gl ? {ok: true} : {ok: false, code: 'webgl-missing', reason: 'WebGL is not available in this browser (no GPU, or WebGL is disabled)'};
}`;
  }
  if (backend === 'webgpu') {
    return `export async function supported() {
  if (!('gpu' in navigator)) return {ok: false, code: 'webgpu-missing', reason: 'WebGPU is not available in this browser (navigator.gpu is missing)'};
  try {
    const adapter = await navigator.gpu.requestAdapter();
    return adapter ? {ok: true} : {ok: false, code: 'webgpu-no-adapter', reason: 'WebGPU found no GPU adapter'};
  } catch (error) {
    return {ok: false, code: 'webgpu-no-adapter', reason: 'WebGPU adapter request failed: ' + error.message};
  }
}`;
  }
  if (backend === 'wasm') {
    return `export async function supported() {
  return typeof WebAssembly === 'object' ? {ok: true} : {ok: false, code: 'wasm-missing', reason: 'WebAssembly is not available in this browser'};
}`;
  }
  return 'export async function supported() { return {ok: true}; }';
}

function packageBytes(results) {
  const packages = {};
  for (const result of results) {
    for (const output of Object.values(result.metafile.outputs)) {
      for (const [input, info] of Object.entries(output.inputs)) {
        const match = input.match(/node_modules\/(@[^/]+\/[^/]+|[^/]+)/);
        const name = match ? match[1] : 'webml';
        packages[name] = (packages[name] || 0) + info.bytesInOutput;
      }
    }
  }
  return packages;
}

async function writeLicenses(results) {
  const notices = [];
  for (const name of Object.keys(packageBytes(results)).sort()) {
    if (name === 'webml') continue;
    const licensePath = ['LICENSE', 'LICENSE.md', 'LICENSE.txt', 'license'].map((f) => join(modules, name, f)).find((p) => existsSync(p));
    const pkg = JSON.parse(await readFile(join(modules, name, 'package.json'), 'utf8'));
    notices.push(`${name} ${pkg.version} (${pkg.license || 'see its package'})\n\n${licensePath ? await readFile(licensePath, 'utf8') : 'No license file shipped in the package.'}`);
  }
  await writeFile(join(outdir, 'licenses.txt'), notices.join('\n\n' + '='.repeat(72) + '\n\n'));
  return 'licenses.txt';
}

try {
  process.stdout.write(JSON.stringify(await main()));
} catch (error) {
  // builder/bundle.py reads the last stderr line: the code and the message.
  process.stderr.write(`${error.stack || error}\nwebml-bundle-error ${error.code || 'bundle-failed'}: ${error.message}\n`);
  process.exitCode = 1;
}
