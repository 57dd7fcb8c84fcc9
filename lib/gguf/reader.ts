/**
 * A GGUF header reader: versions 1 to 3, every metadata value type (arrays of arrays too), tensor infos,
 * `general.alignment` and the data offset, little- or big-endian. It reads the header only, never tensor
 * data, with hard caps on string and array lengths and nesting, so a hostile file cannot exhaust memory or
 * hang it; any problem is a {@linkcode GgufError} naming the file and the byte offset.
 *
 * @module
 */

/** GGUF metadata value types. */
export const GGUF_TYPE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

const TYPE_NAMES = Object.fromEntries(Object.entries(GGUF_TYPE).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;
const SCALAR_SIZE: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  10: 8,
  11: 8,
  12: 8,
};

/**
 * A metadata value: numbers (64-bit integers as bigint when they do not fit a double exactly), strings,
 * booleans, arrays, or a summary of an array that was skipped.
 *
 * @example
 * ```ts
 * const asText = (v: GgufValue): string =>
 *   Array.isArray(v) ? `[${v.length} values]` : typeof v === "object" ? `[${v.length} skipped]` : String(v);
 * ```
 */
export type GgufValue = number | bigint | string | boolean | GgufValue[] | SkippedArray;

/**
 * An array the reader did not materialise (see {@linkcode ReadOptions.skipArraysOver}).
 *
 * @example
 * ```ts ignore
 * const h = await readGgufHeader("model.gguf", { skipArraysOver: 256 });
 * const tokens = h.metadata["tokenizer.ggml.tokens"] as SkippedArray;
 * console.log(tokens.skipped, tokens.itemType, tokens.length); // true STRING 151936
 * ```
 */
export interface SkippedArray {
  /** Marks a skipped array. */
  skipped: true;
  /** Element type name, e.g. `STRING`. */
  itemType: string;
  /** Number of elements. */
  length: number;
}

/**
 * One tensor's description.
 *
 * @example
 * ```ts ignore
 * for (const t of (await readGgufHeader("model.gguf")).tensors.slice(0, 3)) {
 *   console.log(t.name, ggmlTypeName(t.type), t.dims.join("x"));
 * }
 * ```
 */
export interface TensorInfo {
  /** Tensor name. */
  name: string;
  /** Dimensions, innermost first. */
  dims: number[];
  /** ggml type id. */
  type: number;
  /** Offset of its data relative to the data section. */
  offset: number;
}

/**
 * A parsed header.
 *
 * @example
 * ```ts ignore
 * const h: GgufHeader = await readGgufHeader("model.gguf", { skipArraysOver: 256 });
 * console.log(h.version, h.metadata["general.architecture"], h.tensors.length, h.dataOffset);
 * ```
 */
export interface GgufHeader {
  /** GGUF version (1, 2 or 3). */
  version: number;
  /** Byte order of the file. */
  littleEndian: boolean;
  /** Metadata by key. */
  metadata: Record<string, GgufValue>;
  /** Value type id of each metadata key (for arrays, `ARRAY`). */
  metadataTypes: Record<string, number>;
  /** Tensor infos in file order. */
  tensors: TensorInfo[];
  /** Data alignment (`general.alignment`, default 32). */
  alignment: number;
  /** Where tensor data begins. */
  dataOffset: number;
  /** Bytes of header read. */
  headerBytes: number;
  /** The file's size. */
  fileSize: number;
}

/**
 * What went wrong.
 *
 * @example
 * ```ts
 * const retryable = (kind: GgufErrorKind) => kind === "io";
 * ```
 */
export type GgufErrorKind = "not-gguf" | "unsupported-version" | "truncated" | "corrupt" | "too-large" | "io";

/**
 * A file that is not a readable GGUF file: which file, what, and at which byte.
 *
 * @example
 * ```ts
 * try {
 *   parseGgufHeader(new TextEncoder().encode("not a model"), "notes.txt");
 * } catch (err) {
 *   if (err instanceof GgufError) console.log(err.kind, err.offset); // not-gguf 0
 * }
 * ```
 */
export class GgufError extends Error {
  /** The file. */
  file: string;
  /** Byte offset where the problem was found. */
  offset: number;
  /** What kind of problem. */
  kind: GgufErrorKind;
  /** Builds the error. */
  constructor(file: string, offset: number, kind: GgufErrorKind, detail: string) {
    super(`${file}: ${detail} (at byte ${offset})`);
    this.name = "GgufError";
    this.file = file;
    this.offset = offset;
    this.kind = kind;
  }
}

/**
 * Limits that keep a hostile file from exhausting memory or time.
 *
 * @example
 * ```ts ignore
 * const limits: Partial<GgufLimits> = { maxHeaderBytes: 16 * 1024 * 1024, maxTensors: 10_000 };
 * await readGgufHeader("upload.gguf", { limits });
 * ```
 */
export interface GgufLimits {
  /** Longest string (bytes). */
  maxString: number;
  /** Most elements in one array. */
  maxArray: number;
  /** Most metadata entries. */
  maxKv: number;
  /** Most tensors. */
  maxTensors: number;
  /** Deepest array nesting. */
  maxDepth: number;
  /** Most header bytes read. */
  maxHeaderBytes: number;
  /** Most array elements materialised in all (a sparse file can claim huge arrays cheaply; each element costs
   * far more memory as a value than its bytes on disk). Each array counts 8 more (an empty array takes the
   * memory of eight numbers). Scalar and string arrays skipped with `skipArraysOver` do not count. */
  maxValues: number;
  /** Most bytes of strings decoded in all (keys, values, tensor names), each string counting 24 more for
   * its own overhead (millions of one-letter strings cost far more than their letters). */
  maxStringBytes: number;
}

/**
 * The default limits.
 *
 * @example
 * ```ts ignore
 * await readGgufHeader("upload.gguf", { limits: { maxHeaderBytes: DEFAULT_LIMITS.maxHeaderBytes / 16 } });
 * ```
 */
export const DEFAULT_LIMITS: GgufLimits = {
  maxString: 64 * 1024 * 1024,
  maxArray: 1 << 27,
  // Real models carry a few dozen keys and at most a few thousand tensors (a 405B model: 1,138); each tensor
  // info costs about 100 bytes as an object, so a sparse file claiming millions of them costs seconds and
  // hundreds of MB before it could be refused.
  maxKv: 1 << 16,
  maxTensors: 1 << 16,
  maxDepth: 8,
  // The largest real headers (262,144-token vocabularies with merges) are under 30 MB.
  maxHeaderBytes: 256 * 1024 * 1024,
  maxValues: 1 << 24,
  maxStringBytes: 128 * 1024 * 1024,
};

/**
 * Options for {@linkcode readGgufHeader}.
 *
 * @example
 * ```ts
 * const factsOnly: ReadOptions = { skipArraysOver: 256 }; // token lists summarised, not read
 * ```
 */
export interface ReadOptions {
  /** Arrays with more elements than this are summarised, not materialised (default: never). Token lists
   * are the big ones: reading facts needs only their length. */
  skipArraysOver?: number;
  /** Override limits. */
  limits?: Partial<GgufLimits>;
}

class NeedMore extends Error {
  constructor(public need: number) {
    super("need more bytes");
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
// ignoreBOM keeps a leading U+FEFF in the string, as gguf's GGUFReader and llama.cpp do (the default strips it).
const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/** Where parse() gets more bytes: `read(into)` fills `into` from the current file position (sync). */
interface ByteSource {
  read(into: Uint8Array): number;
}

/** Parses a header from `first` (the file's first bytes), pulling more from `src` as needed. */
function parse(
  first: Uint8Array,
  fileSize: number,
  file: string,
  options: ReadOptions,
  limits: GgufLimits,
  src?: ByteSource,
): GgufHeader {
  // A window over the file: `buf[0]` is byte `base`; bytes up to `end` are valid. It slides forward and
  // grows only when one value is larger than it, so a header of any size is read once, in little memory.
  let buf = first;
  let view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let end = first.length;
  let base = 0;
  let pos = 0;
  const abs = () => base + pos;
  const fail = (kind: GgufErrorKind, detail: string, at = abs()): never => {
    throw new GgufError(file, at, kind, detail);
  };
  const refill = (n: number) => {
    if (base + pos + n > fileSize) {
      fail("truncated", `file ends inside the header (needs ${base + pos + n - fileSize} more bytes)`);
    }
    if (!src) throw new NeedMore(base + pos + n);
    if (base + pos + n > limits.maxHeaderBytes) {
      fail("too-large", `header is over ${limits.maxHeaderBytes} bytes`);
    }
    const keep = end - pos;
    let size = buf.length;
    while (size < n + 65536) size *= 2;
    const next = size === buf.length && buf.byteOffset === 0 ? buf : new Uint8Array(size);
    if (next === buf) buf.copyWithin(0, pos, end);
    else next.set(buf.subarray(pos, end), 0);
    base += pos;
    pos = 0;
    end = keep;
    buf = next;
    view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    while (end < n) {
      const got = src.read(buf.subarray(end));
      if (got <= 0) fail("truncated", "file ends inside the header");
      end += got;
    }
  };
  const need = (n: number) => {
    if (pos + n > end) refill(n);
  };
  if (fileSize < 8) fail("not-gguf", "too small to be a GGUF file", 0);
  need(8);
  if (buf[0] !== 0x47 || buf[1] !== 0x47 || buf[2] !== 0x55 || buf[3] !== 0x46) {
    fail("not-gguf", "not a GGUF file (no GGUF magic)", 0);
  }
  let le = true;
  let version = view.getUint32(4, true);
  if (version > 0xffff) {
    const be = view.getUint32(4, false);
    if (be >= 1 && be <= 3) {
      le = false;
      version = be;
    }
  }
  if (version < 1 || version > 3) fail("unsupported-version", `unsupported GGUF version ${version}`, 4);
  pos = 8;
  const wide = version >= 2; // v1 uses 32-bit counts and lengths

  const u32 = () => {
    need(4);
    const v = view.getUint32(pos, le);
    pos += 4;
    return v;
  };
  const u64n = (what: string) => {
    need(8);
    // Two 32-bit halves: BigInt is slow in the hot loops over token lists.
    const lo = view.getUint32(le ? pos : pos + 4, le);
    const hi = view.getUint32(le ? pos + 4 : pos, le);
    if (hi > 0x1fffff) fail("corrupt", `${what} ${view.getBigUint64(pos, le)} is impossibly large`);
    pos += 8;
    return hi * 4294967296 + lo;
  };
  const count = (what: string, max: number, minItemBytes: number) => {
    const at = abs();
    const n = wide ? u64n(what) : u32();
    if (n > max) fail("too-large", `${what} ${n} is over the limit of ${max}`, at);
    if (n * minItemBytes > fileSize - abs()) fail("truncated", `${what} ${n} does not fit in the file`, at);
    return n;
  };
  let values = 0;
  let stringBytes = 0;
  const str = (what: string) => {
    const at = abs();
    const n = count(`${what} length`, limits.maxString, 1);
    stringBytes += n + 24;
    if (stringBytes > limits.maxStringBytes) {
      fail("too-large", `strings in the header add up to over ${limits.maxStringBytes} bytes`, at);
    }
    need(n);
    const s = utf8.decode(buf.subarray(pos, pos + n));
    pos += n;
    return s;
  };
  const skipStrings = (n: number) => {
    // The hot loop of a facts-only read: walk the lengths of a token list without decoding it. The fast path
    // keeps the position in a local and reads little-endian lengths byte by byte (closure variables and
    // DataView calls cost more than the work); anything unusual goes the general way.
    const maxStr = limits.maxString;
    let i = 0;
    while (i < n) {
      if (wide && le) {
        let p = pos;
        const e = end;
        const b = buf;
        while (i < n && p + 8 <= e) {
          const lo = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16)) + b[p + 3] * 16777216;
          if ((b[p + 4] | b[p + 5] | b[p + 6] | b[p + 7]) !== 0 || lo > maxStr) break;
          const next = p + 8 + lo;
          if (next > e) break;
          p = next;
          i++;
        }
        pos = p;
        if (i >= n) return;
      }
      // A string the fast path did not take (it crosses the window's end, its length is bad, or the file is
      // big-endian or v1): count() reports a bad length, need() slides the window.
      const len = count("string length", maxStr, 1);
      need(len);
      pos += len;
      i++;
    }
  };
  const skipBytes = (n: number) => {
    while (n > 0) {
      const step = Math.min(n, end - pos);
      if (step <= 0) {
        need(Math.min(n, 1 << 20));
        continue;
      }
      pos += step;
      n -= step;
    }
  };
  const scalar = (type: number): GgufValue => {
    const size = SCALAR_SIZE[type];
    need(size);
    let v: GgufValue;
    switch (type) {
      case 0:
        v = view.getUint8(pos);
        break;
      case 1:
        v = view.getInt8(pos);
        break;
      case 2:
        v = view.getUint16(pos, le);
        break;
      case 3:
        v = view.getInt16(pos, le);
        break;
      case 4:
        v = view.getUint32(pos, le);
        break;
      case 5:
        v = view.getInt32(pos, le);
        break;
      case 6:
        v = view.getFloat32(pos, le);
        break;
      case 7: {
        const b = view.getUint8(pos);
        if (b > 1) fail("corrupt", `boolean value ${b} is neither 0 nor 1`);
        v = b === 1;
        break;
      }
      case 10: {
        const b = view.getBigUint64(pos, le);
        v = b <= MAX_SAFE ? Number(b) : b;
        break;
      }
      case 11: {
        const b = view.getBigInt64(pos, le);
        v = b <= MAX_SAFE && b >= MIN_SAFE ? Number(b) : b;
        break;
      }
      default:
        v = view.getFloat64(pos, le);
    }
    pos += size;
    return v;
  };
  const value = (type: number, depth: number): GgufValue => {
    if (type === GGUF_TYPE.STRING) return str("string");
    if (type === GGUF_TYPE.ARRAY) {
      if (depth >= limits.maxDepth) fail("too-large", `arrays nested deeper than ${limits.maxDepth}`);
      const itemAt = abs();
      const itemType = u32();
      if (!(itemType in TYPE_NAMES)) fail("corrupt", `unknown array element type ${itemType}`, itemAt);
      const minBytes = itemType === GGUF_TYPE.STRING || itemType === GGUF_TYPE.ARRAY
        ? (wide ? 8 : 4)
        : SCALAR_SIZE[itemType];
      const n = count("array length", limits.maxArray, minBytes);
      if (options.skipArraysOver !== undefined && n > options.skipArraysOver) {
        if (itemType === GGUF_TYPE.STRING) skipStrings(n);
        else if (itemType === GGUF_TYPE.ARRAY) {
          // Each inner array is walked one by one (and small ones are materialised): they count as values, so
          // a sparse file of millions of empty arrays ends at the total cap instead of a 13-second walk.
          values += n;
          if (values > limits.maxValues) {
            fail("too-large", `arrays in the header add up to over ${limits.maxValues} values`, itemAt);
          }
          for (let i = 0; i < n; i++) value(GGUF_TYPE.ARRAY, depth + 1);
        } else skipBytes(n * minBytes);
        return { skipped: true, itemType: TYPE_NAMES[itemType], length: n };
      }
      values += n + 8;
      if (values > limits.maxValues) {
        fail("too-large", `arrays in the header add up to over ${limits.maxValues} values`, itemAt);
      }
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = value(itemType, depth + 1);
      return out;
    }
    if (!(type in SCALAR_SIZE)) fail("corrupt", `unknown value type ${type}`);
    return scalar(type);
  };

  const nTensors = count("tensor count", limits.maxTensors, 4 + 4 + 8 + (wide ? 8 : 4));
  const nKv = count("metadata count", limits.maxKv, (wide ? 8 : 4) + 4);
  const metadata: Record<string, GgufValue> = {};
  const metadataTypes: Record<string, number> = {};
  for (let i = 0; i < nKv; i++) {
    const key = str("key");
    const typeAt = abs();
    const type = u32();
    if (!(type in TYPE_NAMES)) {
      fail("corrupt", `unknown value type ${type} for key '${key.slice(0, 80)}'`, typeAt);
    }
    metadata[key] = value(type, 0);
    metadataTypes[key] = type;
  }
  const tensors: TensorInfo[] = new Array(nTensors);
  for (let i = 0; i < nTensors; i++) {
    const name = str("tensor name");
    const dimsAt = abs();
    const nDims = u32();
    if (nDims > 4) {
      fail("corrupt", `tensor '${name.slice(0, 80)}' has ${nDims} dimensions (at most 4)`, dimsAt);
    }
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(wide ? u64n("tensor dimension") : u32());
    const type = u32();
    const offset = u64n("tensor offset");
    tensors[i] = { name, dims, type, offset };
  }
  const alignRaw = metadata["general.alignment"];
  let alignment = 32;
  if (alignRaw !== undefined) {
    if (typeof alignRaw !== "number" || alignRaw <= 0 || (alignRaw & (alignRaw - 1)) !== 0) {
      fail("corrupt", `general.alignment ${String(alignRaw)} is not a power of two`);
    }
    alignment = alignRaw as number;
  }
  const headerBytes = abs();
  const dataOffset = Math.ceil(headerBytes / alignment) * alignment;
  return {
    version,
    littleEndian: le,
    metadata,
    metadataTypes,
    tensors,
    alignment,
    dataOffset,
    headerBytes,
    fileSize,
  };
}

/**
 * Parses a GGUF header from bytes already in memory (the whole file or at least its header).
 *
 * @example
 * ```ts ignore
 * const h = parseGgufHeader(bytes, "model.gguf");
 * ```
 */
export function parseGgufHeader(
  bytes: Uint8Array,
  file = "<bytes>",
  options: ReadOptions = {},
  fileSize = bytes.length,
): GgufHeader {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  try {
    return parse(bytes, fileSize, file, options, limits);
  } catch (err) {
    if (err instanceof NeedMore) {
      throw new GgufError(file, bytes.length, "truncated", "file ends inside the header");
    }
    throw err;
  }
}

/** What {@linkcode parseGgufHeaderPrefix} needs when the bytes it was given end inside the header. */
export interface NeedMoreBytes {
  /** How many bytes from the start of the file the parse needs (at least) to go on. */
  needBytes: number;
}

/**
 * Parses a GGUF header from the first bytes of a file whose full size is known (a file read over the network
 * in growing pieces): the header, or how many bytes it needs at least when `prefix` ends inside it. A file
 * that is truly too short, corrupt or over the limits throws {@linkcode GgufError} as for a file on disk.
 *
 * @example
 * ```ts ignore
 * let bytes = await firstBytes(512 * 1024);
 * let r = parseGgufHeaderPrefix(bytes, size, url);
 * while ("needBytes" in r) r = parseGgufHeaderPrefix(bytes = await firstBytes(r.needBytes * 2), size, url);
 * ```
 */
export function parseGgufHeaderPrefix(
  prefix: Uint8Array,
  fileSize: number,
  file = "<bytes>",
  options: ReadOptions = {},
): GgufHeader | NeedMoreBytes {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  try {
    return parse(prefix, fileSize, file, options, limits);
  } catch (err) {
    if (!(err instanceof NeedMore)) throw err;
    // The same cap a file read has: a hostile header cannot make the caller fetch without end.
    if (err.need > limits.maxHeaderBytes) {
      throw new GgufError(file, prefix.length, "too-large", `header is over ${limits.maxHeaderBytes} bytes`);
    }
    return { needBytes: err.need };
  }
}

/**
 * Reads a GGUF file's header: only the header's bytes are read, in growing chunks.
 *
 * @example
 * ```ts ignore
 * const h = await readGgufHeader("model.gguf", { skipArraysOver: 1024 });
 * console.log(h.metadata["general.architecture"], h.tensors.length);
 * ```
 */
export async function readGgufHeader(path: string, options: ReadOptions = {}): Promise<GgufHeader> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    throw new GgufError(path, 0, "io", `cannot open: ${(err as Error).message}`);
  }
  try {
    const fileSize = (await file.stat()).size;
    // Small reads first: most headers end within the first window; token lists slide it forward.
    const first = new Uint8Array(Math.min(Math.max(fileSize, 8), 512 * 1024));
    let got = 0;
    while (got < first.length) {
      const n = file.readSync(first.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    const src: ByteSource = { read: (into) => file.readSync(into) ?? 0 };
    return parse(first.subarray(0, got), fileSize, path, options, limits, src);
  } catch (err) {
    if (err instanceof GgufError) throw err;
    throw new GgufError(path, 0, "io", `cannot read: ${(err as Error).message}`);
  } finally {
    file.close();
  }
}

/**
 * The name of a metadata value type id.
 *
 * @example
 * ```ts
 * ggufTypeName(8); // "STRING"
 * ```
 */
export function ggufTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `UNKNOWN(${type})`;
}
