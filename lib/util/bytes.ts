/**
 * Byte buffers.
 *
 * @module
 */

/**
 * The parts one after another in one buffer. One part (or all others empty) is returned as it is, not copied:
 * callers that keep the result must not write to the parts.
 *
 * @example
 * ```ts
 * concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]); // Uint8Array [1, 2, 3]
 * ```
 */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const filled = parts.filter((p) => p.length > 0);
  if (filled.length === 1) return filled[0];
  const out = new Uint8Array(filled.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of filled) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
