// Feedback on the prediction shown: "right", or "wrong" with the correct answer (a class, the
// labels of a multi-label task, or the value of each regression target). Corrections stay on the
// device; with the person's opt-in they keep the input and can be exported as a CSV that
// `webml build` reads through data.extra.
import {correctionsCsv, keepsInputs, setKeepsInputs} from '../feedback.js';
import {parseNumber} from '../encode.js';
import {t} from '../i18n.js';
import {setMessage} from './status.js';

/**
 * Wire the feedback area. ``store`` is an open FeedbackStore, ``variant`` the model the page runs
 * (ab.js chooseVariant), and ``onVerdict(wrong)`` counts a verdict for monitoring. Returns
 * {show(input, output)}, to call after each prediction shown, and {hide()}, to call when the
 * prediction shown no longer matches the input.
 */
export function setupFeedback(root, metadata, {store, variant, onVerdict}) {
  const area = root.querySelector('#feedback');
  const rightButton = root.querySelector('#feedback-right');
  const wrongButton = root.querySelector('#feedback-wrong');
  const form = root.querySelector('#feedback-form');
  const fields = root.querySelector('#feedback-fields');
  const keep = root.querySelector('#feedback-keep');
  const exportLink = root.querySelector('#feedback-export');
  const clearButton = root.querySelector('#feedback-clear');
  const status = root.querySelector('#feedback-status');
  const output = metadata.output;
  let current = null;
  let exportUrl = null;

  keep.checked = keepsInputs();
  keep.addEventListener('change', () => setKeepsInputs(keep.checked));

  const setStatus = (key, params = {}) => {
    setMessage('feedback-status', key, params);
  };
  const clearStatus = () => {
    delete status.dataset.i18n;
    status.textContent = '';
  };
  const closeForm = () => {
    form.hidden = true;
    wrongButton.setAttribute('aria-expanded', 'false');
    const error = root.querySelector('#feedback-error');
    delete error.dataset.i18n;
    error.textContent = '';
  };
  const answered = () => {
    rightButton.disabled = true;
    wrongButton.disabled = true;
    closeForm();
  };

  async function refreshStored() {
    const records = await store.all();
    const withInputs = records.filter((r) => r.input);
    const count = root.querySelector('#feedback-count');
    count.dataset.count = String(records.length);
    count.dataset.exportable = String(withInputs.length);
    count.hidden = records.length === 0;
    if (records.length) setMessage('feedback-count', 'feedback.count', {count: records.length, withInputs: withInputs.length});
    clearButton.hidden = records.length === 0;
    if (exportUrl) URL.revokeObjectURL(exportUrl);
    exportUrl = null;
    exportLink.hidden = withInputs.length === 0;
    if (withInputs.length) {
      exportUrl = URL.createObjectURL(new Blob([correctionsCsv(metadata, withInputs)], {type: 'text/csv'}));
      exportLink.href = exportUrl;
      exportLink.download = `${metadata.name}-corrections.csv`;
    }
    return records.length;
  }

  rightButton.addEventListener('click', async () => {
    if (!current) return;
    answered();
    await onVerdict(false);
    setStatus('feedback.thanks');
  });

  wrongButton.addEventListener('click', () => {
    if (!current) return;
    fields.replaceChildren(...answerFields(output, current.predicted));
    form.hidden = false;
    wrongButton.setAttribute('aria-expanded', 'true');
    clearStatus();
    fields.querySelector('input, select').focus();
  });

  root.querySelector('#feedback-cancel').addEventListener('click', () => {
    closeForm();
    wrongButton.focus();
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!current) return;
    const {answer, invalid, errorKey, errorParams} = readAnswer(form, output, current.predicted);
    if (invalid) {
      setMessage('feedback-error', errorKey, errorParams);
      invalid.setAttribute('aria-invalid', 'true');
      invalid.focus();
      return;
    }
    const shown = current;
    answered();
    await store.add({input: shown.input, predicted: shown.predicted, correct: answer, variant: variant.name, model: variant.sha256});
    await onVerdict(true);
    const count = await refreshStored();
    setStatus('feedback.saved', {count});
    status.focus();
  });

  clearButton.addEventListener('click', async () => {
    await store.clear();
    await refreshStored();
    setStatus('feedback.cleared');
  });

  refreshStored();
  return {
    show(input, values) {
      current = {input, predicted: predictedAnswer(output, values)};
      area.hidden = false;
      rightButton.disabled = false;
      wrongButton.disabled = false;
      closeForm();
      clearStatus();
    },
    hide() {
      current = null;
      area.hidden = true;
      closeForm();
      clearStatus();
    },
  };
}

/** Return the model's prediction in the form a correction takes: a label, a list of labels, or numbers. */
export function predictedAnswer(output, values) {
  if (output.task === 'regression') return [...values];
  if (output.task === 'multilabel') return output.labels.filter((_, i) => values[i] >= output.threshold);
  if (output.task === 'binary') return output.labels[values[0] >= output.threshold ? 1 : 0];
  let best = 0;
  values.forEach((p, i) => {
    if (p > values[best]) best = i;
  });
  return output.labels[best];
}

function answerFields(output, predicted) {
  if (output.task === 'regression') return output.targets.map((target, i) => valueField(output, target, i));
  if (output.task === 'multilabel') return [labelsFieldset(output, predicted)];
  return [classField(output, predicted)];
}

/** Build the number field for regression target ``i``. */
function valueField(output, target, i) {
  const wrapper = document.createElement('div');
  wrapper.className = 'field';
  const label = document.createElement('label');
  label.htmlFor = `feedback-value-${i}`;
  if (output.targets.length > 1) {
    label.textContent = target;
  } else {
    label.dataset.i18n = 'feedback.correctValue';
    label.textContent = t('feedback.correctValue');
  }
  const control = document.createElement('input');
  control.type = 'text';
  control.inputMode = 'decimal';
  control.autocomplete = 'off';
  control.id = `feedback-value-${i}`;
  control.setAttribute('aria-describedby', 'feedback-error');
  wrapper.append(label, control);
  return wrapper;
}

/** Build one checkbox per label, with the predicted labels checked. */
function labelsFieldset(output, predicted) {
  const fieldset = document.createElement('fieldset');
  const legend = document.createElement('legend');
  legend.dataset.i18n = 'feedback.correctLabels';
  legend.textContent = t('feedback.correctLabels');
  fieldset.append(legend);
  output.labels.forEach((name, i) => {
    const row = document.createElement('div');
    row.className = 'checkbox-row';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.id = `feedback-label-${i}`;
    box.value = name;
    box.checked = predicted.includes(name);
    const label = document.createElement('label');
    label.htmlFor = box.id;
    label.textContent = name;
    row.append(box, label);
    fieldset.append(row);
  });
  return fieldset;
}

/** Build a select of the classes other than the predicted one, because a correction names another class. */
function classField(output, predicted) {
  const wrapper = document.createElement('div');
  wrapper.className = 'field';
  const label = document.createElement('label');
  label.htmlFor = 'feedback-label';
  label.dataset.i18n = 'feedback.correct';
  label.textContent = t('feedback.correct');
  const select = document.createElement('select');
  select.id = 'feedback-label';
  select.setAttribute('aria-describedby', 'feedback-error');
  const placeholder = document.createElement('option');
  placeholder.value = '';
  placeholder.dataset.i18n = 'feedback.choose';
  placeholder.textContent = t('feedback.choose');
  select.append(placeholder);
  for (const name of output.labels.filter((l) => l !== predicted)) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  wrapper.append(label, select);
  return wrapper;
}

function readAnswer(form, output, predicted) {
  for (const control of form.querySelectorAll('[aria-invalid]')) control.removeAttribute('aria-invalid');
  if (output.task === 'regression') {
    const answer = [];
    for (let i = 0; i < output.targets.length; i += 1) {
      const control = form.querySelector(`#feedback-value-${i}`);
      let value;
      try {
        value = parseNumber(control.value);
      } catch (error) {
        return {invalid: control, errorKey: 'input.notNumber', errorParams: {value: error.value}};
      }
      if (value === null) return {invalid: control, errorKey: 'feedback.missingAnswer', errorParams: {}};
      answer.push(value);
    }
    return {answer};
  }
  if (output.task === 'multilabel') {
    const boxes = [...form.querySelectorAll('input[type="checkbox"]')];
    const answer = boxes.filter((box) => box.checked).map((box) => box.value);
    const same = answer.length === predicted.length && answer.every((label) => predicted.includes(label));
    if (same) return {invalid: boxes[0], errorKey: 'feedback.sameAnswer', errorParams: {}};
    return {answer};
  }
  const select = form.querySelector('#feedback-label');
  if (select.value === '') return {invalid: select, errorKey: 'feedback.missingAnswer', errorParams: {}};
  return {answer: select.value};
}
