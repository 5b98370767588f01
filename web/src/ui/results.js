// Prediction output: a bar per class or label with its probability, or a regression value.
import {formatNumber, t} from '../i18n.js';

const MAX_BARS = 20;

/** Render outputs for one input into ``container`` according to metadata.json's ``output``. */
export function renderPrediction(container, output, values) {
  container.replaceChildren();
  container.dataset.task = output.task;
  const headline = document.createElement('p');
  headline.className = 'headline';
  headline.id = 'predicted-label';
  container.append(headline);

  if (output.task === 'regression') {
    renderRegression(headline, output, values);
    return;
  }

  const probabilities = output.task === 'binary' ? [1 - values[0], values[0]] : values;
  const labels = output.labels;
  let predicted;
  if (output.task === 'multilabel') {
    predicted = labels.filter((_, i) => probabilities[i] >= output.threshold);
    headline.textContent = predicted.length ? t('output.predictedLabels', {labels: predicted.join(', ')}) : t('output.noLabels');
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

  const showThreshold = output.task === 'multilabel' || (output.task === 'binary' && output.threshold !== 0.5);
  if (showThreshold) {
    const note = document.createElement('p');
    note.className = 'note';
    note.id = 'threshold-note';
    note.dataset.threshold = String(output.threshold);
    const threshold = formatNumber(output.threshold, {style: 'percent', maximumFractionDigits: 1});
    note.textContent = output.task === 'multilabel'
      ? t('output.threshold', {threshold})
      : t('output.binaryThreshold', {threshold, label: labels[1]});
    container.append(note);
  }

  const order = probabilities.map((p, i) => i);
  if (order.length > MAX_BARS) order.sort((a, b) => probabilities[b] - probabilities[a]).splice(MAX_BARS);
  const list = document.createElement('ol');
  list.className = 'bars';
  list.setAttribute('aria-label', t('output.probabilities'));
  for (const i of order) {
    list.append(bar(labels[i], probabilities[i], predicted.includes(labels[i]), output.task === 'multilabel' ? output.threshold : null));
  }
  container.append(list);
}

function renderRegression(headline, output, values) {
  const parts = values.map((value, i) => {
    const text = t('output.value', {value: formatNumber(value, {maximumSignificantDigits: 4}), unit: output.unit || ''}).trim();
    return output.targets.length > 1 ? `${output.targets[i]}: ${text}` : text;
  });
  headline.textContent = output.targets.length > 1 ? parts.join(', ') : t('output.predictedValue', {value: parts[0]});
  headline.dataset.value = String(values[0]);
  headline.dataset.unit = output.unit || '';
}

function bar(label, probability, predicted, threshold) {
  const percent = formatNumber(probability, {style: 'percent', maximumFractionDigits: 1});
  const item = document.createElement('li');
  item.className = predicted ? 'bar predicted' : 'bar';
  item.dataset.label = label;
  item.dataset.probability = String(probability);
  const name = document.createElement('span');
  name.className = 'bar-label';
  name.textContent = label;
  name.title = label;
  const track = document.createElement('span');
  track.className = 'bar-track';
  track.setAttribute('aria-hidden', 'true');
  const fill = document.createElement('span');
  fill.className = 'bar-fill';
  // CSSOM writes are allowed by the page's style-src 'self' policy; style attributes in HTML are not.
  fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
  track.append(fill);
  if (threshold !== null) {
    const marker = document.createElement('span');
    marker.className = 'bar-threshold';
    marker.style.left = `${threshold * 100}%`;
    track.append(marker);
  }
  const value = document.createElement('span');
  value.className = 'bar-value';
  value.textContent = percent;
  item.append(name, track, value);
  return item;
}
