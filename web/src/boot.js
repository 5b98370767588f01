// A classic (non-module) script: module scripts and service workers do not run from file://
// pages, so this is what explains to a person who opened index.html from disk what to do.
import {pickLanguage, setLanguage, t} from './i18n.js';

if (location.protocol === 'file:') {
  document.addEventListener('DOMContentLoaded', () => {
    setLanguage(pickLanguage(document.documentElement.dataset.language));
    const notice = document.getElementById('file-notice');
    notice.textContent = t('app.fileProtocol');
    notice.hidden = false;
    const status = document.getElementById('app-status');
    if (status) status.hidden = true;
  });
}
