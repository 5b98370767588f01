// Image preprocessing: any picture (a drawing, a file, a camera frame) becomes the
// height × width × channels grid of values in the range the model was trained on.
// The resampling is an exact area average written out here, so it does not depend on the
// browser's canvas smoothing.

/** Read RGBA pixels of a drawable (canvas, ImageBitmap, video frame) at its own size. */
export function readPixels(source, width, height) {
  const canvas = new OffscreenCanvasOrCanvas(width, height);
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.fillStyle = '#ffffff';
  context.fillRect(0, 0, width, height);
  context.drawImage(source, 0, 0, width, height);
  return context.getImageData(0, 0, width, height);
}

function OffscreenCanvasOrCanvas(width, height) {
  if (typeof OffscreenCanvas !== 'undefined') return new OffscreenCanvas(width, height);
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

/**
 * Convert RGBA pixels into the model's input values.
 *
 * ``image`` is metadata.json's input.image: {height, width, channels, range: [low, high], ink}.
 * For ink datasets (strokes stored as high values, like scikit-learn's digits) a light picture is
 * inverted so that dark strokes become high values, then cropped to the strokes and centred in
 * a square, and cells count ink as in the dataset (see inkCells).
 * Returns a plain array of height × width × channels numbers, or null when an ink picture is blank.
 */
export function pixelsToInput(imageData, image) {
  const {width: sourceWidth, height: sourceHeight, data} = imageData;
  const channels = image.channels;
  const planes = [];
  if (channels === 1) {
    const gray = new Float32Array(sourceWidth * sourceHeight);
    for (let i = 0; i < gray.length; i += 1) {
      gray[i] = (0.299 * data[i * 4] + 0.587 * data[i * 4 + 1] + 0.114 * data[i * 4 + 2]) / 255;
    }
    planes.push(gray);
  } else {
    for (let c = 0; c < 3; c += 1) {
      const plane = new Float32Array(sourceWidth * sourceHeight);
      for (let i = 0; i < plane.length; i += 1) plane[i] = data[i * 4 + c] / 255;
      planes.push(plane);
    }
  }
  const [low, high] = image.range;
  const out = new Array(image.height * image.width * channels);
  let resampled;
  if (image.ink) {
    const mean = planes[0].reduce((sum, v) => sum + v, 0) / planes[0].length;
    // A light background means dark strokes: invert so that strokes carry the high values.
    if (mean > 0.5) for (const plane of planes) for (let i = 0; i < plane.length; i += 1) plane[i] = 1 - plane[i];
    const found = inkBox(planes[0], sourceWidth, sourceHeight, 0.1);
    if (!found) return null;
    resampled = planes.map((plane) => inkCells(plane, sourceWidth, sourceHeight, squareBox(found), image.width, image.height));
  } else {
    const box = {x: 0, y: 0, width: sourceWidth, height: sourceHeight};
    resampled = planes.map((plane) => areaResample(plane, sourceWidth, sourceHeight, box, image.width, image.height));
  }
  for (let y = 0; y < image.height; y += 1) {
    for (let x = 0; x < image.width; x += 1) {
      for (let c = 0; c < channels; c += 1) {
        out[(y * image.width + x) * channels + c] = low + resampled[c][y * image.width + x] * (high - low);
      }
    }
  }
  return out;
}

// Ink datasets such as scikit-learn's digits were made from binary bitmaps 4× the final size
// (32 × 32 for 8 × 8), each final cell counting the ink pixels of its 4 × 4 block. The same is
// done here: resample to the bitmap size, threshold, thicken strokes by one bitmap pixel (pen
// strokes on a screen are thinner, relative to the digit, than the scanned ones), count blocks.
const INK_BLOCK = 4;
const INK_THRESHOLD = 0.35;

function inkCells(plane, width, height, box, targetWidth, targetHeight) {
  const bitmapWidth = targetWidth * INK_BLOCK;
  const bitmapHeight = targetHeight * INK_BLOCK;
  const gray = areaResample(plane, width, height, box, bitmapWidth, bitmapHeight);
  const bitmap = new Uint8Array(bitmapWidth * bitmapHeight);
  for (let y = 0; y < bitmapHeight; y += 1) {
    for (let x = 0; x < bitmapWidth; x += 1) {
      let on = 0;
      for (let dy = -1; dy <= 1 && !on; dy += 1) {
        for (let dx = -1; dx <= 1 && !on; dx += 1) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < bitmapHeight && xx >= 0 && xx < bitmapWidth && gray[yy * bitmapWidth + xx] > INK_THRESHOLD) on = 1;
        }
      }
      bitmap[y * bitmapWidth + x] = on;
    }
  }
  const cells = new Float32Array(targetWidth * targetHeight);
  for (let y = 0; y < bitmapHeight; y += 1) {
    for (let x = 0; x < bitmapWidth; x += 1) {
      cells[Math.floor(y / INK_BLOCK) * targetWidth + Math.floor(x / INK_BLOCK)] += bitmap[y * bitmapWidth + x];
    }
  }
  return cells.map((count) => count / (INK_BLOCK * INK_BLOCK));
}

function inkBox(plane, width, height, threshold) {
  let minX = width;
  let minY = height;
  let maxX = -1;
  let maxY = -1;
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      if (plane[y * width + x] > threshold) {
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        if (y > maxY) maxY = y;
      }
    }
  }
  if (maxX < 0) return null;
  return {x: minX, y: minY, width: maxX - minX + 1, height: maxY - minY + 1};
}

function squareBox(box) {
  // A thin stroke such as "1" keeps its aspect: the short side is padded to a square.
  const side = Math.max(box.width, box.height);
  const centerX = box.x + box.width / 2;
  const centerY = box.y + box.height / 2;
  return {x: centerX - side / 2, y: centerY - side / 2, width: side, height: side};
}

/** Average the plane over each target cell of ``box``; area outside the picture counts as 0. */
function areaResample(plane, width, height, box, targetWidth, targetHeight) {
  const out = new Float32Array(targetWidth * targetHeight);
  const cellWidth = box.width / targetWidth;
  const cellHeight = box.height / targetHeight;
  for (let ty = 0; ty < targetHeight; ty += 1) {
    const y0 = box.y + ty * cellHeight;
    const y1 = y0 + cellHeight;
    for (let tx = 0; tx < targetWidth; tx += 1) {
      const x0 = box.x + tx * cellWidth;
      const x1 = x0 + cellWidth;
      let sum = 0;
      for (let py = Math.max(0, Math.floor(y0)); py < Math.min(height, Math.ceil(y1)); py += 1) {
        const overlapY = Math.min(y1, py + 1) - Math.max(y0, py);
        if (overlapY <= 0) continue;
        for (let px = Math.max(0, Math.floor(x0)); px < Math.min(width, Math.ceil(x1)); px += 1) {
          const overlapX = Math.min(x1, px + 1) - Math.max(x0, px);
          if (overlapX > 0) sum += plane[py * width + px] * overlapX * overlapY;
        }
      }
      out[ty * targetWidth + tx] = sum / (cellWidth * cellHeight);
    }
  }
  return out;
}

/** Decode an image file (from a picker, a drop or a fetch) into a drawable bitmap. */
export async function decodeImageFile(blob) {
  return createImageBitmap(blob);
}
