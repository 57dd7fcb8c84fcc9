/**
 * The library's npm dependencies, in one place. The code is published by URL, and a module imported by URL
 * resolves its bare specifiers (`"zod"`) with the importer's import map, not with this repository's
 * deno.json; so `lib/` names each package with its version here, and every other file imports it from this
 * file. Tests, scripts and benches use deno.json's import map, which must name the same versions.
 *
 * @module
 */
export { z } from "npm:zod@^4.1.0";
export { parse as parseYaml, parseDocument } from "npm:yaml@^2.8.0";
export { type Handler, Hono } from "npm:hono@^4.9.0";
