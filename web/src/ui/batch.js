// Batch prediction for tabular apps: a CSV file of rows (picked or dropped) is predicted in the
// page, and the predictions download as a CSV with the input columns kept.
import {t} from '../i18n.js';
import {parseCategory, parseNumber} from '../encode.js';
import {CsvError, formatCsv, MISSING_TOKENS, parseCsv} from '../csv.js';
import {watchFiles} from './filedrop.js';

// Rows per call to the model: large enough to be fast, small enough to keep the page responsive.
const CHUNK_ROWS = 256;
const PREVIEW_ROWS = 10;

export function setupBatch(root, metadata, {predict}) {
  const section = root.querySelector('#batch-section');
  section.hidden = false;
  const fileInput = root.querySelector('#batch-file');
  const dropZone = root.querySelector('#batch-drop');
  const status = root.querySelector('#batch-status');
  const download = root.querySelector('#batch-download');
  const preview = root.querySelector('#batch-preview');
  let downloadUrl = null;

  const template = root.querySelector('#batch-template');
  const names = metadata.input.features.map((f) => f.name);
  const examples = (metadata.examples || []).map((row) => names.map((name) => row[name]));
  template.href = URL.createObjectURL(new Blob([formatCsv(names, examples)], {type: 'text/csv'}));
  template.download = `${metadata.name}-example.csv`;

  // Show messages [key, params] one after another. Each keeps its key, so a language switch re-renders it.
  const setStatus = (parts, code = '') => {
    status.dataset.code = code;
    status.replaceChildren(...parts.flatMap(([key, params], i) => {
      const span = document.createElement('span');
      span.dataset.i18n = key;
      span.dataset.i18nParams = JSON.stringify(params);
      span.textContent = t(key, params);
      return i === 0 ? [span] : [' ', span];
    }));
  };

  async function run(file) {
    download.hidden = true;
    preview.replaceChildren();
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    try {
      const table = parseCsv(await file.text());
      const rows = readRows(table, metadata.input.features);
      const valid = rows.filter((r) => !r.error);
      const outputs = [];
      for (let start = 0; start < valid.length; start += CHUNK_ROWS) {
        setStatus([['batch.progress', {done: start, total: valid.length}]]);
        outputs.push(...await predict(valid.slice(start, start + CHUNK_ROWS).map((r) => r.raw)));
      }
      valid.forEach((r, i) => {
        r.output = outputs[i];
      });
      const result = predictionTable(table, rows, metadata.output);
      downloadUrl = URL.createObjectURL(new Blob([formatCsv(result.header, result.rows)], {type: 'text/csv'}));
      download.href = downloadUrl;
      download.download = `${metadata.name}-predictions.csv`;
      download.hidden = false;
      const errors = rows.filter((r) => r.error);
      const predicted = ['batch.result', {count: valid.length}];
      if (errors.length) {
        const first = `${t('batch.line', {line: errors[0].line})}: ${errorText(errors[0].error)}`;
        setStatus([predicted, ['batch.unreadRows', {count: errors.length, first}]], 'rows-invalid');
      } else {
        setStatus([predicted]);
      }
      showPreview(preview, result);
    } catch (error) {
      setStatus([['batch.failed', {error: errorText(error)}]], error.code || 'batch-failed');
    }
  }

  watchFiles(fileInput, dropZone, (files) => run(files[0]));
}

/** Turn CSV rows into raw inputs keyed by feature name; a row that cannot be read gets ``error``. */
function readRows(table, features) {
  const index = new Map(table.header.map((name, i) => [name, i]));
  const missing = features.filter((f) => !index.has(f.name)).map((f) => f.name);
  if (missing.length) {
    throw new CsvError('csv-missing-columns', 1, t('batch.missingColumns', {columns: missing.map((name) => `“${name}”`).join(', ')}));
  }
  if (table.rows.length === 0) throw new CsvError('csv-no-rows', 1, t('batch.noRows'));
  return table.rows.map((cells, r) => {
    // A short row lost cells (an unquoted line break or a missing delimiter), so the cells left
    // may sit under the wrong columns. Extra cells beyond the header are ignored.
    if (cells.length < table.header.length) {
      return {line: table.lines[r], cells, error: {code: 'short-row', cells: cells.length, header: table.header.length}};
    }
    const raw = {};
    for (const feature of features) {
      const cell = (cells[index.get(feature.name)] ?? '').trim();
      const value = MISSING_TOKENS.has(cell) ? null : cell;
      if (feature.kind === 'numeric') {
        try {
          raw[feature.name] = parseNumber(value);
        } catch (error) {
          return {line: table.lines[r], cells, error: {code: 'not-a-number', column: feature.name, value: error.value}};
        }
      } else {
        raw[feature.name] = parseCategory(value);
      }
    }
    return {line: table.lines[r], cells, raw};
  });
}

function errorText(error) {
  if (error.code === 'not-a-number') return t('batch.notNumber', {column: error.column, value: error.value});
  if (error.code === 'short-row') return t('batch.shortRow', {cells: error.cells, header: error.header});
  return error.message || String(error);
}

/** The output table: the input columns, then the prediction columns, then an error column if needed. */
export function predictionTable(table, rows, output) {
  const header = [...table.header];
  let columns;
  if (output.task === 'regression') {
    columns = output.targets.map((target) => `predicted ${target}`);
  } else {
    columns = [output.task === 'multilabel' ? 'predicted labels' : 'predicted', ...output.labels.map((label) => `probability ${label}`)];
  }
  header.push(...columns);
  const anyError = rows.some((r) => r.error);
  if (anyError) header.push('error');
  const body = rows.map((r) => {
    const cells = table.header.map((_, i) => r.cells[i] ?? '');
    if (r.error) return [...cells, ...columns.map(() => ''), errorText(r.error)];
    const values = predictionCells(output, r.output);
    return anyError ? [...cells, ...values, ''] : [...cells, ...values];
  });
  return {header, rows: body, predictionColumns: columns};
}

function predictionCells(output, values) {
  if (output.task === 'regression') return values;
  if (output.task === 'binary') {
    const probabilities = [1 - values[0], values[0]];
    return [output.labels[values[0] >= output.threshold ? 1 : 0], ...probabilities];
  }
  if (output.task === 'multilabel') {
    return [output.labels.filter((_, i) => values[i] >= output.threshold).join(';'), ...values];
  }
  let best = 0;
  values.forEach((p, i) => {
    if (p > values[best]) best = i;
  });
  return [output.labels[best], ...values];
}

function showPreview(container, result) {
  const table = document.createElement('table');
  const caption = document.createElement('caption');
  caption.dataset.i18n = 'batch.preview';
  const params = {count: Math.min(PREVIEW_ROWS, result.rows.length)};
  caption.dataset.i18nParams = JSON.stringify(params);
  caption.textContent = t('batch.preview', params);
  table.append(caption);
  const head = document.createElement('tr');
  for (const name of result.header) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = name;
    head.append(th);
  }
  const thead = document.createElement('thead');
  thead.append(head);
  const tbody = document.createElement('tbody');
  for (const row of result.rows.slice(0, PREVIEW_ROWS)) {
    const tr = document.createElement('tr');
    for (const value of row) {
      const td = document.createElement('td');
      td.textContent = typeof value === 'number' ? value.toPrecision(4) : String(value);
      tr.append(td);
    }
    tbody.append(tr);
  }
  table.append(thead, tbody);
  container.append(table);
}
