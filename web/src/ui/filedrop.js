// A file picker and a drop zone that both hand their files to one callback.

/**
 * Call ``onFiles(files, picked)`` with the files picked in ``fileInput`` (``picked`` true) or
 * dropped on ``dropZone`` (false), and mark the zone with the ``dragging`` class during a drag.
 */
export function watchFiles(fileInput, dropZone, onFiles) {
  fileInput.addEventListener('change', () => {
    if (fileInput.files.length) onFiles([...fileInput.files], true);
    // Cleared so that picking the same file again fires another change.
    fileInput.value = '';
  });
  dropZone.addEventListener('dragover', (event) => {
    event.preventDefault();
    dropZone.classList.add('dragging');
  });
  dropZone.addEventListener('dragleave', () => dropZone.classList.remove('dragging'));
  dropZone.addEventListener('drop', (event) => {
    event.preventDefault();
    dropZone.classList.remove('dragging');
    const files = [...event.dataTransfer.files];
    if (files.length) onFiles(files, false);
  });
}
