// Image inputs: the drawing pad, a file picker, drag and drop, and the camera where present.
import {t} from '../i18n.js';
import {decodeImageFile, pixelsToInput, readPixels} from '../image.js';
import {createDrawPad} from './draw.js';
import {watchFiles} from './filedrop.js';

/**
 * Wire the image inputs. ``onInput(values)`` predicts an image, ``onError(message)`` reports one
 * that cannot be used (also shown in #image-error next to the inputs), and ``onClear()`` runs
 * when the drawing is cleared.
 */
export function setupImageInput(root, image, {onInput, onError, onClear}) {
  const canvas = root.querySelector('#draw-pad');
  const preview = root.querySelector('#input-preview');
  const errorElement = root.querySelector('#image-error');
  const clearPreview = () => preview.getContext('2d').clearRect(0, 0, preview.width, preview.height);
  const showError = (message) => {
    errorElement.textContent = message;
    clearPreview();
    onError(message);
  };
  const clearAll = () => {
    errorElement.textContent = '';
    clearPreview();
    onClear();
  };
  const pad = createDrawPad(canvas, {
    onStrokeEnd: () => submit(canvas, canvas.width, canvas.height),
    onClear: clearAll,
  });

  function submit(source, width, height) {
    const values = pixelsToInput(readPixels(source, width, height), image);
    if (values === null) return;
    errorElement.textContent = '';
    showPreview(preview, values, image);
    onInput(values);
  }

  root.querySelector('#clear-button').addEventListener('click', () => pad.clear());

  async function useFile(file) {
    try {
      const bitmap = await decodeImageFile(file);
      pad.clear();
      const context = canvas.getContext('2d');
      const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
      const w = bitmap.width * scale;
      const h = bitmap.height * scale;
      context.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
      submit(bitmap, bitmap.width, bitmap.height);
      bitmap.close();
    } catch (error) {
      pad.clear();
      showError(t('input.imageFailed', {error: error.message || String(error)}));
    }
  }

  // A picked file is tried even without an image type, because a file picker's accept list is
  // only a hint; among dropped files the first image is used.
  watchFiles(root.querySelector('#file-input'), root.querySelector('#drop-zone'), (files, picked) => {
    const file = picked ? files[0] : files.find((f) => f.type.startsWith('image/'));
    if (file) useFile(file);
    else showError(t('input.notImage', {name: files[0].name}));
  });

  setupCamera(root, (video) => submit(video, video.videoWidth, video.videoHeight), showError);
  return {
    show: (values) => {
      showPreview(preview, values, image);
      return onInput(values);
    },
  };
}

function setupCamera(root, capture, onError) {
  const start = root.querySelector('#camera-button');
  const shoot = root.querySelector('#capture-button');
  const video = root.querySelector('#camera-video');
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
  // The button shows only where the browser lists a camera; the list is readable before any
  // permission is asked (labels stay empty until then).
  const showIfCamera = async () => {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      start.hidden = !devices.some((device) => device.kind === 'videoinput');
    } catch {
      start.hidden = true;
    }
  };
  showIfCamera();
  navigator.mediaDevices.addEventListener('devicechange', showIfCamera);

  let stream = null;
  const stop = () => {
    stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.hidden = true;
    shoot.hidden = true;
    start.dataset.i18n = 'input.camera';
    start.textContent = t('input.camera');
    start.setAttribute('aria-pressed', 'false');
  };
  start.addEventListener('click', async () => {
    if (stream) {
      stop();
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'environment'}, audio: false});
      video.srcObject = stream;
      await video.play();
      video.hidden = false;
      shoot.hidden = false;
      start.dataset.i18n = 'input.cameraStop';
      start.textContent = t('input.cameraStop');
      start.setAttribute('aria-pressed', 'true');
      shoot.focus();
    } catch (error) {
      stream = null;
      onError(t('input.cameraFailed', {error: error.message || String(error)}));
    }
  });
  shoot.addEventListener('click', () => {
    if (stream && video.videoWidth > 0) capture(video);
  });
}

/** Draw the model's view of the input (the downsampled grid) so a person sees what it sees. */
function showPreview(canvas, values, image) {
  const context = canvas.getContext('2d');
  const cellW = canvas.width / image.width;
  const cellH = canvas.height / image.height;
  const [low, high] = image.range;
  for (let y = 0; y < image.height; y += 1) {
    for (let x = 0; x < image.width; x += 1) {
      const base = (y * image.width + x) * image.channels;
      const channel = (c) => Math.round(((values[base + c] - low) / (high - low || 1)) * 255);
      let r;
      let g;
      let b;
      if (image.channels === 1) {
        const v = image.ink ? 255 - channel(0) : channel(0);
        r = v;
        g = v;
        b = v;
      } else {
        [r, g, b] = [channel(0), channel(1), channel(2)];
      }
      context.fillStyle = `rgb(${r}, ${g}, ${b})`;
      context.fillRect(x * cellW, y * cellH, Math.ceil(cellW), Math.ceil(cellH));
    }
  }
}
