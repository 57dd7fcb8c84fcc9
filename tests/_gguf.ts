/**
 * Small GGUF files for tests: little-endian GGUF v3 with the given keys and tensors, the tensor data
 * zero-filled and aligned to 32 bytes.
 *
 * @module
 */

/** A metadata key: name, type (string, uint32 or float32) and value. */
export type Kv = [string, "str" | "u32" | "f32", string | number];

/** A tensor's header entry and the size of its (zero) data. */
export interface Tensor {
  /** Tensor name. */
  name: string;
  /** Dimensions. */
  dims: number[];
  /** ggml type id (0: F32). */
  type: number;
  /** Bytes of data. */
  bytes: number;
}

/**
 * A GGUF v3 file with these keys and tensors.
 *
 * @example
 * ```ts
 * const bytes = ggufFile([["general.architecture", "str", "llama"]]);
 * ```
 */
export function ggufFile(kvs: Kv[], tensors: Tensor[] = []): Uint8Array<ArrayBuffer> {
  const out: number[] = [0x47, 0x47, 0x55, 0x46];
  const u32 = (v: number) => out.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255);
  const u64 = (v: number) => (u32(v % 4294967296), u32(Math.floor(v / 4294967296)));
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    out.push(...b);
  };
  u32(3);
  u64(tensors.length);
  u64(kvs.length);
  for (const [k, type, v] of kvs) {
    str(k);
    if (type === "str") (u32(8), str(v as string));
    else if (type === "u32") (u32(4), u32(v as number));
    else {
      u32(6);
      const b = new Uint8Array(4);
      new DataView(b.buffer).setFloat32(0, v as number, true);
      out.push(...b);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    str(t.name);
    u32(t.dims.length);
    t.dims.forEach(u64);
    u32(t.type);
    u64(offset);
    offset += Math.ceil(t.bytes / 32) * 32;
  }
  const dataOffset = Math.ceil(out.length / 32) * 32;
  const file = new Uint8Array(dataOffset + offset);
  file.set(out);
  return file;
}
