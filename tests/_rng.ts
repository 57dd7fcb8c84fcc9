/**
 * A seeded pseudo-random generator (mulberry32) for the fuzz and mutation tests: the same seed gives the same
 * cases on every run, so a failure can be replayed.
 *
 * @module
 */

/** Numbers in [0, 1) from `seed`. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
