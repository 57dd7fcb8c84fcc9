/**
 * Zod schemas typed by hand-written interfaces. A published schema needs an explicit type (documentation
 * tools do not infer it), and zod's inferred types print as zod internals; so each schema is declared as
 * `z.ZodType<Interface>`, and {@linkcode exactly} makes the compiler check that the interface is what the
 * schema outputs, field by field, so the two cannot drift apart.
 *
 * @module
 */
import type { z } from "../deps.ts";

/** True when `A` and `B` are assignable to each other (the same fields, optional the same way). */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/**
 * Types a schema as `z.ZodType<T>`, refusing to compile unless the schema's output is exactly `T`.
 *
 * @example
 * ```ts
 * import { z } from "../deps.ts";
 * interface Point {
 *   x: number;
 *   label?: string;
 * }
 * const PointSchema: z.ZodType<Point> = exactly<Point>()(
 *   z.object({ x: z.number(), label: z.string().optional() }),
 * );
 * PointSchema.parse({ x: 1 });
 * ```
 */
export function exactly<T>(): <S extends z.ZodType<T>>(
  schema:
    & S
    & (Same<z.output<S>, T> extends true ? unknown : { "output differs from the interface": z.output<S> }),
) => z.ZodType<T> {
  return (schema) => schema;
}
