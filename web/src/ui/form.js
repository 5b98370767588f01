// The tabular input form, generated from metadata.json's feature list: number fields with the
// training range as a hint, a select for each categorical feature, and a blank value meaning
// "missing" for both. Example rows from the test set can fill the form.
import {formatNumber, t} from '../i18n.js';
import {parseNumber} from '../encode.js';

export function setupForm(root, input, examples, {onInput, onError}) {
  const form = root.querySelector('#feature-form');
  const fields = root.querySelector('#feature-fields');
  fields.replaceChildren();
  input.features.forEach((feature, index) => fields.append(featureField(feature, index)));

  const exampleSelect = root.querySelector('#example-select');
  exampleSelect.replaceChildren(option('', t('input.examplePlaceholder'), 'input.examplePlaceholder'));
  examples.forEach((row, i) => {
    const item = option(String(i), t('input.exampleRow', {index: i + 1}));
    exampleSelect.append(item);
  });
  exampleSelect.closest('.example-row').hidden = examples.length === 0;
  exampleSelect.addEventListener('change', () => {
    if (exampleSelect.value === '') return;
    fill(form, input.features, examples[Number(exampleSelect.value)]);
    form.requestSubmit();
  });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const row = {};
    let invalid = null;
    input.features.forEach((feature, index) => {
      const control = form.elements[`feature-${index}`];
      const error = form.querySelector(`#feature-${index}-error`);
      error.textContent = '';
      control.removeAttribute('aria-invalid');
      if (feature.kind === 'numeric') {
        try {
          row[feature.name] = parseNumber(control.value);
        } catch (parseError) {
          error.textContent = t('input.notNumber', {value: parseError.value});
          control.setAttribute('aria-invalid', 'true');
          invalid = invalid || control;
        }
      } else {
        row[feature.name] = categoryValue(form, index, control);
      }
    });
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

function featureField(feature, index) {
  const wrapper = document.createElement('div');
  wrapper.className = 'field';
  const id = `feature-${index}`;
  const label = document.createElement('label');
  label.htmlFor = id;
  label.textContent = feature.unit ? `${feature.name} (${feature.unit})` : feature.name;
  const hint = document.createElement('span');
  hint.className = 'hint';
  hint.id = `${id}-hint`;
  const error = document.createElement('span');
  error.className = 'error';
  error.id = `${id}-error`;
  error.setAttribute('role', 'alert');
  let control;
  if (feature.kind === 'numeric') {
    control = document.createElement('input');
    control.type = 'text';
    control.inputMode = 'decimal';
    control.autocomplete = 'off';
    const range = t('input.range', {
      min: formatNumber(feature.min, {maximumSignificantDigits: 6}),
      max: formatNumber(feature.max, {maximumSignificantDigits: 6}),
    });
    hint.textContent = `${range}. ${t('input.blankMissing')}`;
  } else {
    control = document.createElement('select');
    control.append(option('', t('input.missingOption')));
    for (const value of feature.vocabulary) control.append(option(value, value));
    control.append(option('__other__', t('input.otherOption')));
    const other = document.createElement('input');
    other.type = 'text';
    other.id = `${id}-other`;
    other.name = `${id}-other`;
    other.hidden = true;
    other.setAttribute('aria-label', `${feature.name}: ${t('input.otherOption')}`);
    control.addEventListener('change', () => {
      other.hidden = control.value !== '__other__';
    });
    hint.textContent = t('input.blankMissing');
    wrapper.append(label, control, other, hint, error);
    control.id = id;
    control.name = id;
    control.setAttribute('aria-describedby', `${id}-hint ${id}-error`);
    return wrapper;
  }
  control.id = id;
  control.name = id;
  control.setAttribute('aria-describedby', `${id}-hint ${id}-error`);
  wrapper.append(label, control, hint, error);
  return wrapper;
}

function categoryValue(form, index, control) {
  if (control.value === '') return null;
  if (control.value === '__other__') {
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
      control.value = '__other__';
      other.hidden = false;
      other.value = value;
    }
  });
}

function option(value, text, key) {
  const element = document.createElement('option');
  element.value = value;
  element.textContent = text;
  if (key) element.dataset.i18n = key;
  return element;
}
