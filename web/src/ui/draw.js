// A drawing pad on a canvas: pointer strokes (mouse, touch, pen) and a keyboard pen for
// people who do not use a pointer (arrow keys move, Space toggles drawing, Delete clears).

const STROKE_FRACTION = 0.08;
const KEY_STEP_FRACTION = 0.04;

/**
 * Make ``canvas`` a drawing pad. ``onStrokeEnd()`` runs after each stroke and ``onClear()`` after
 * each clear. Returns {clear, isEmpty}.
 */
export function createDrawPad(canvas, {onStrokeEnd, onClear = () => {}}) {
  const context = canvas.getContext('2d', {willReadFrequently: true});
  let drawing = false;
  let last = null;
  let keyPen = {x: canvas.width / 2, y: canvas.height / 2, down: false};
  let empty = true;

  function paintBlank() {
    context.fillStyle = '#ffffff';
    context.fillRect(0, 0, canvas.width, canvas.height);
    empty = true;
  }

  function clear() {
    paintBlank();
    onClear();
  }

  function segment(from, to) {
    context.strokeStyle = '#000000';
    context.lineWidth = canvas.width * STROKE_FRACTION;
    context.lineCap = 'round';
    context.lineJoin = 'round';
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
    empty = false;
  }

  function point(event) {
    const rect = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) / rect.width) * canvas.width,
      y: ((event.clientY - rect.top) / rect.height) * canvas.height,
    };
  }

  canvas.addEventListener('pointerdown', (event) => {
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = point(event);
    segment(last, last);
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!drawing) return;
    const next = point(event);
    segment(last, next);
    last = next;
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    onStrokeEnd();
  };
  canvas.addEventListener('pointerup', finish);
  canvas.addEventListener('pointercancel', finish);

  canvas.addEventListener('keydown', (event) => {
    const step = canvas.width * KEY_STEP_FRACTION;
    const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step]};
    if (event.key in moves) {
      event.preventDefault();
      const [dx, dy] = moves[event.key];
      const next = {
        x: Math.min(canvas.width, Math.max(0, keyPen.x + dx)),
        y: Math.min(canvas.height, Math.max(0, keyPen.y + dy)),
        down: keyPen.down,
      };
      if (keyPen.down) segment(keyPen, next);
      keyPen = next;
    } else if (event.key === ' ') {
      event.preventDefault();
      keyPen.down = !keyPen.down;
      if (keyPen.down) segment(keyPen, keyPen);
      else onStrokeEnd();
    } else if (event.key === 'Delete' || event.key === 'Backspace') {
      event.preventDefault();
      clear();
    }
  });

  paintBlank();
  return {clear, isEmpty: () => empty};
}
