// Bytes of what a build ships, raw and gzip-compressed, against the full TF.js bundle.
import {readFile} from 'node:fs/promises';
import {relative, resolve} from 'node:path';
import {gzipSync} from 'node:zlib';

async function fileSize(path) {
  const data = await readFile(path);
  return {raw: data.length, gzip: gzipSync(data, {level: 9}).length};
}

function add(total, size) {
  return {raw: total.raw + size.raw, gzip: total.gzip + size.gzip};
}

/**
 * Measure the JavaScript of the app bundle.
 *
 * ``shared`` is what every page loads (app.js, boot.js and the chunks app.js imports
 * statically); ``backends[NAME]`` is what a page loads on top of that when it starts backend
 * NAME (its chunk and chunks only it imports), plus the WASM binary for each variant of the wasm
 * backend. ``js`` counts every JavaScript file written, whether a device loads it or not.
 */
export async function measureBundle({outdir, metafile, bootFiles, wasmFiles, backends, fullBundle}) {
  const outputs = metafile.outputs;
  const sizes = {};
  for (const path of [...Object.keys(outputs), ...bootFiles]) sizes[resolve(path)] = await fileSize(path);
  const closure = (start) => {
    const seen = new Set();
    const stack = [start];
    while (stack.length) {
      const path = stack.pop();
      if (seen.has(path)) continue;
      seen.add(path);
      for (const item of outputs[path].imports) if (item.kind === 'import-statement') stack.push(item.path);
    }
    return seen;
  };
  const jsOutputs = Object.keys(outputs).filter((path) => path.endsWith('.js'));
  const appEntry = jsOutputs.find((path) => outputs[path].entryPoint && outputs[path].entryPoint.endsWith('src/main.js'));
  const sharedPaths = new Set([...closure(appEntry), ...bootFiles]);
  const describe = (paths) => {
    let total = {raw: 0, gzip: 0};
    for (const path of paths) total = add(total, sizes[resolve(path)]);
    return {...total, files: [...paths].map((path) => relative(outdir, path)).sort()};
  };
  const perBackend = {};
  for (const name of backends) {
    const entry = jsOutputs.find((path) => outputs[path].entryPoint === `webml-backend:${name}`);
    if (!entry) continue;
    const own = [...closure(entry)].filter((path) => !sharedPaths.has(path));
    perBackend[name] = describe(own);
  }
  const wasm = {};
  for (const [variant, file] of Object.entries(wasmFiles)) wasm[variant] = await fileSize(resolve(outdir, file));
  let js = {raw: 0, gzip: 0};
  for (const path of [...jsOutputs, ...bootFiles]) js = add(js, sizes[resolve(path)]);
  return {
    shared: describe(sharedPaths),
    backends: perBackend,
    js,
    wasm,
    full_bundle: {file: '@tensorflow/tfjs/dist/tf.min.js', ...(await fileSize(fullBundle))},
  };
}
