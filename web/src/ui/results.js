// Prediction output: a bar per class or label with its probability, or a regression value.
import {formatNumber, t} from '../i18n.js';

const MAX_BARS = 20;

/** Render outputs for one input into ``container`` according to metadata.json's ``output``. */
export function renderPrediction(container, output, values) {
  container.replaceChildren();
  const headline = document.createElement('p');
  headline.className = 'headline';
  headline.id = 'predicted-label';
  container.append(headline);

  if (output.task === 'regression') {
    const parts = values.map((value, i) => {
      const name = output.targets.length > 1 ? `${output.targets[i]}: ` : '';
      return name + t('output.value', {value: formatNumber(value, {maximumSignificantDigits: 4}), unit: output.unit || ''}).trim();
    });
    headline.textContent = parts.join(', ');
    headline.dataset.value = String(values[0]);
    return;
  }

  const probabilities = output.task === 'binary' ? [1 - values[0], values[0]] : values;
  const labels = output.labels;
  let predicted;
  if (output.task === 'multilabel') {
    predicted = labels.filter((_, i) => probabilities[i] >= output.threshold);
    headline.textContent = predicted.length ? t('output.predicted', {label: predicted.join(', ')}) : t('output.noLabels');
    const note = document.createElement('p');
    note.className = 'note';
    note.textContent = t('output.threshold', {threshold: formatNumber(output.threshold)});
    container.append(note);
  } else {
    let best = 0;
    probabilities.forEach((p, i) => {
      if (p > probabilities[best]) best = i;
    });
    if (output.task === 'binary') best = values[0] >= output.threshold ? 1 : 0;
    predicted = [labels[best]];
    headline.textContent = t('output.predicted', {label: labels[best]});
  }
  headline.dataset.label = predicted.join(',');

  const order = probabilities.map((p, i) => i);
  if (order.length > MAX_BARS) order.sort((a, b) => probabilities[b] - probabilities[a]).splice(MAX_BARS);
  const list = document.createElement('ol');
  list.className = 'bars';
  for (const i of order) {
    const percent = formatNumber(probabilities[i], {style: 'percent', maximumFractionDigits: 1});
    const item = document.createElement('li');
    item.className = predicted.includes(labels[i]) ? 'bar predicted' : 'bar';
    item.setAttribute('aria-label', t('output.probability', {label: labels[i], percent}));
    const name = document.createElement('span');
    name.className = 'bar-label';
    name.textContent = labels[i];
    const track = document.createElement('span');
    track.className = 'bar-track';
    track.setAttribute('aria-hidden', 'true');
    const fill = document.createElement('span');
    fill.className = 'bar-fill';
    fill.style.width = `${Math.max(0, Math.min(1, probabilities[i])) * 100}%`;
    track.append(fill);
    const value = document.createElement('span');
    value.className = 'bar-value';
    value.textContent = percent;
    item.append(name, track, value);
    list.append(item);
  }
  container.append(list);
}
