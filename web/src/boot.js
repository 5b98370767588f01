// A classic (non-module) script: module scripts and service workers do not run from file://
// pages, so this is what explains to a person who opened index.html from disk what to do.
import {pickLanguage, setLanguage, t} from './i18n.js';

if (location.protocol === 'file:') {
  document.addEventListener('DOMContentLoaded', () => {
    setLanguage(pickLanguage(document.documentElement.dataset.language));
    const folder = decodeURIComponent(location.pathname.replace(/\/[^/]*$/, '')) || '.';
    const notice = document.getElementById('file-notice');
    const heading = document.createElement('strong');
    heading.textContent = t('file.heading');
    const explanation = document.createElement('p');
    explanation.textContent = t('file.explanation');
    const command = document.createElement('code');
    command.id = 'file-command';
    command.textContent = `webml serve ${/[\s"'\\]/.test(folder) ? JSON.stringify(folder) : folder}`;
    const alternative = document.createElement('p');
    alternative.textContent = t('file.alternative');
    notice.replaceChildren(heading, explanation, command, alternative);
    notice.hidden = false;
    document.body.dataset.state = 'file-protocol';
  });
}
