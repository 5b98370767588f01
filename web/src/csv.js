// CSV reading and writing for batch predictions (RFC 4180: quoted fields, doubled quotes,
// line breaks inside quotes). The delimiter is guessed from the header line.

const DELIMITERS = [',', ';', '\t'];
// Cells that mean "missing", the same list as MISSING_TOKENS in builder/data.py, which reads
// the training CSV; compared after trimming whitespace.
export const MISSING_TOKENS = new Set(['', 'NA', 'N/A', 'NaN', 'nan', 'NULL', 'null', 'None', '?']);

/** A CSV file that cannot be read, with the line it failed on. */
export class CsvError extends Error {
  constructor(code, line, message) {
    super(message);
    this.code = code;
    this.line = line;
  }
}

/**
 * Parse CSV text into {header, rows, lines, delimiter}; ``lines[i]`` is the 1-based line
 * where ``rows[i]`` starts, for error messages. Blank lines are skipped.
 */
export function parseCsv(text) {
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const delimiter = guessDelimiter(source);
  const records = [];
  let field = '';
  let record = [];
  let quoted = false;
  let line = 1;
  let recordLine = 1;
  let fieldStarted = false;
  for (let i = 0; i < source.length; i += 1) {
    const char = source[i];
    if (quoted) {
      if (char === '"' && source[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (char === '"') {
        quoted = false;
      } else {
        if (char === '\n') line += 1;
        field += char;
      }
      continue;
    }
    if (char === '"' && !fieldStarted) {
      quoted = true;
      fieldStarted = true;
    } else if (char === delimiter) {
      record.push(field);
      field = '';
      fieldStarted = false;
    } else if (char === '\n' || char === '\r') {
      if (char === '\r' && source[i + 1] === '\n') i += 1;
      record.push(field);
      if (record.length > 1 || record[0].trim() !== '') records.push({cells: record, line: recordLine});
      record = [];
      field = '';
      fieldStarted = false;
      line += 1;
      recordLine = line;
    } else {
      field += char;
      if (char !== ' ') fieldStarted = true;
    }
  }
  if (quoted) throw new CsvError('csv-unclosed-quote', recordLine, `line ${recordLine}: a quoted field is never closed`);
  record.push(field);
  if (record.length > 1 || record[0].trim() !== '') records.push({cells: record, line: recordLine});
  if (records.length === 0) throw new CsvError('csv-empty', 1, 'the file has no header row');
  const header = records[0].cells.map((name) => name.trim());
  return {header, rows: records.slice(1).map((r) => r.cells), lines: records.slice(1).map((r) => r.line), delimiter};
}

function guessDelimiter(text) {
  const end = text.search(/[\r\n]/);
  const first = end < 0 ? text : text.slice(0, end);
  let best = ',';
  let bestCount = 0;
  for (const delimiter of DELIMITERS) {
    const count = first.split(delimiter).length - 1;
    if (count > bestCount) {
      best = delimiter;
      bestCount = count;
    }
  }
  return best;
}

/** Write rows (arrays of strings, numbers or null) as CSV text with a header line. */
export function formatCsv(header, rows) {
  const cell = (value) => {
    const text = value === null || value === undefined ? '' : String(value);
    return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [header, ...rows].map((row) => row.map(cell).join(',')).join('\r\n') + '\r\n';
}
