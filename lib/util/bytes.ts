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

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 2 ** 10,
  m: 1e6,
  mb: 1e6,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gib: 2 ** 30,
  t: 1e12,
  tb: 1e12,
  tib: 2 ** 40,
};

/**
 * A size as people write it in a config file or an environment variable: a number of bytes, or a number with
 * a unit (`512MiB`, `2 GiB`, `1.5GB`, `8g`); binary units are powers of 1024, decimal ones of 1000. Undefined
 * for anything else (a negative number, an unknown unit).
 *
 * @example
 * ```ts
 * parseByteSize("2GiB"); // 2147483648
 * parseByteSize(1024);   // 1024
 * parseByteSize("lots"); // undefined
 * ```
 */
export function parseByteSize(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = BYTE_UNITS[m[2].toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
}
