// The tabular input form, generated from metadata.json's feature list: number fields with the
// training range as a hint, a select for each categorical feature, and a blank value meaning
// "missing" for both. Example rows from the test set can fill the form.
import {formatNumber, t} from '../i18n.js';
import {parseNumber} from '../encode.js';

const OTHER_VALUE = '__other__';

/**
 * Build the form and wire it. ``onInput(row)`` predicts a valid row, ``onError(null)`` reports an
 * invalid one (each field shows its own error), and ``onClear()`` runs when the form is reset.
 */
export function setupForm(root, input, examples, {onInput, onError, onClear}) {
  const form = root.querySelector('#feature-form');
  const fields = root.querySelector('#feature-fields');
  fields.replaceChildren(...input.features.map((feature, index) => featureField(feature, index)));

  const exampleSelect = root.querySelector('#example-select');
  exampleSelect.replaceChildren(option('', 'input.examplePlaceholder'));
  examples.forEach((row, i) => exampleSelect.append(option(String(i), 'input.exampleRow', {index: i + 1})));
  exampleSelect.closest('.example-row').hidden = examples.length === 0;
  exampleSelect.addEventListener('change', () => {
    if (exampleSelect.value === '') return;
    fill(form, input.features, examples[Number(exampleSelect.value)]);
    form.requestSubmit();
  });

  form.addEventListener('reset', () => {
    onClear();
    // Reset restores the empty form after this handler; hidden "other" fields follow.
    setTimeout(() => {
      input.features.forEach((feature, index) => {
        const other = form.elements[`feature-${index}-other`];
        if (other) other.hidden = true;
      });
      exampleSelect.value = '';
    });
  });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const {row, invalid} = readForm(form, input.features);
    if (invalid) {
      invalid.focus();
      onError(null);
      return;
    }
    onInput(row);
  });
  return {
    show: (row) => {
      fill(form, input.features, row);
      return onInput(row);
    },
  };
}

/** The label text of a feature: its name, with the unit unless the name already ends with it. */
export function featureLabel(feature) {
  if (!feature.unit || feature.name.endsWith(`(${feature.unit})`)) return feature.name;
  return `${feature.name} (${feature.unit})`;
}

function readForm(form, features) {
  const row = {};
  let invalid = null;
  features.forEach((feature, index) => {
    const control = form.elements[`feature-${index}`];
    const error = form.querySelector(`#feature-${index}-error`);
    error.textContent = '';
    delete error.dataset.i18n;
    control.removeAttribute('aria-invalid');
    if (feature.kind === 'numeric') {
      try {
        row[feature.name] = parseNumber(control.value);
      } catch (parseError) {
        error.dataset.i18n = 'input.notNumber';
        error.dataset.i18nParams = JSON.stringify({value: parseError.value});
        error.textContent = t('input.notNumber', {value: parseError.value});
        control.setAttribute('aria-invalid', 'true');
        invalid = invalid || control;
      }
    } else {
      row[feature.name] = categoryValue(form, index, control);
    }
  });
  return {row, invalid};
}

function featureField(feature, index) {
  const id = `feature-${index}`;
  const wrapper = document.createElement('div');
  wrapper.className = 'field';
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = featureLabel(feature);
  const hint = document.createElement('span');
  hint.className = 'hint';
  hint.id = `${id}-hint`;
  const error = document.createElement('span');
  error.className = 'error';
  error.id = `${id}-error`;
  error.setAttribute('aria-live', 'polite');

  let control;
  const extra = [];
  if (feature.kind === 'numeric') {
    control = document.createElement('input');
    control.type = 'text';
    control.inputMode = 'decimal';
    control.autocomplete = 'off';
    control.spellcheck = false;
    hint.dataset.i18n = 'input.rangeHint';
    hint.dataset.i18nParams = JSON.stringify({
      min: formatNumber(feature.min, {maximumSignificantDigits: 6}),
      max: formatNumber(feature.max, {maximumSignificantDigits: 6}),
    });
  } else {
    control = document.createElement('select');
    control.append(option('', 'input.missingOption'));
    for (const value of feature.vocabulary) control.append(option(value, null, {}, value));
    control.append(option(OTHER_VALUE, 'input.otherOption'));
    const other = document.createElement('input');
    other.type = 'text';
    other.id = `${id}-other`;
    other.name = `${id}-other`;
    other.hidden = true;
    other.autocomplete = 'off';
    other.setAttribute('aria-label', `${feature.name}: ${t('input.otherOption')}`);
    control.addEventListener('change', () => {
      other.hidden = control.value !== OTHER_VALUE;
      if (!other.hidden) other.focus();
    });
    extra.push(other);
    hint.dataset.i18n = 'input.categoryHint';
    hint.dataset.i18nParams = JSON.stringify({count: feature.vocabulary.length});
  }
  hint.textContent = t(hint.dataset.i18n, JSON.parse(hint.dataset.i18nParams));
  control.id = id;
  control.name = id;
  control.dataset.feature = feature.name;
  control.setAttribute('aria-describedby', `${id}-hint ${id}-error`);
  wrapper.append(label, control, ...extra, hint, error);
  return wrapper;
}

function categoryValue(form, index, control) {
  if (control.value === '') return null;
  if (control.value === OTHER_VALUE) {
    const text = form.elements[`feature-${index}-other`].value.trim();
    return text === '' ? null : text;
  }
  return control.value;
}

function fill(form, features, row) {
  features.forEach((feature, index) => {
    const control = form.elements[`feature-${index}`];
    const value = row[feature.name];
    if (feature.kind === 'numeric') {
      control.value = value === null || value === undefined ? '' : String(value);
      return;
    }
    const other = form.elements[`feature-${index}-other`];
    if (value === null || value === undefined) {
      control.value = '';
      other.hidden = true;
    } else if (feature.vocabulary.includes(value)) {
      control.value = value;
      other.hidden = true;
    } else {
      control.value = OTHER_VALUE;
      other.hidden = false;
      other.value = value;
    }
  });
}

/** An <option>; its text comes from the message ``key`` (kept for language switches) or ``text``. */
function option(value, key, params = {}, text = '') {
  const element = document.createElement('option');
  element.value = value;
  if (key) {
    element.dataset.i18n = key;
    if (Object.keys(params).length) element.dataset.i18nParams = JSON.stringify(params);
    element.textContent = t(key, params);
  } else {
    element.textContent = text;
  }
  return element;
}
