/**
 * `llama-mgr pull REF`: get a model from Hugging Face, an Ollama registry or a URL, with a progress bar on a
 * terminal (bytes, speed, time left) and plain lines otherwise. The model is listed by `llama-mgr models` and
 * served by the daemon at once.
 *
 * @module
 */
import type { Command } from "./command.ts";
import { bool, str } from "./args.ts";
import { type PullEvent, pullModel } from "../lib/models/pull/mod.ts";
import { humanBytes } from "./ollama_verbs.ts";
import { UserError } from "../lib/util/errors.ts";

const enc = new TextEncoder();

/** Draws pull progress: one redrawn line per file on a terminal, a line per status and per 10% otherwise. */
export function pullDisplay(options: { tty: boolean; write: (s: string) => void }): (e: PullEvent) => void {
  let current = "";
  let started = 0;
  let lastDecile = -1;
  let lastDraw = 0;
  return (e) => {
    const now = Date.now();
    if (e.status !== current) {
      if (options.tty && current) options.write("\n");
      current = e.status;
      started = now;
      lastDecile = -1;
      if (!options.tty || !e.total) options.write(options.tty ? e.status : `${e.status}\n`);
    }
    if (!e.total) return;
    const done = e.completed ?? 0;
    const pct = Math.floor((done / e.total) * 100);
    if (options.tty) {
      if (now - lastDraw < 100 && done < e.total) return;
      lastDraw = now;
      const secs = (now - started) / 1000;
      const rate = secs > 0.2 ? done / secs : 0;
      const left = rate > 0 ? Math.ceil((e.total - done) / rate) : undefined;
      const width = 25;
      const bar = "█".repeat(Math.round((pct / 100) * width)).padEnd(width, " ");
      const line =
        `${e.status}: ${String(pct).padStart(3)}% ▕${bar}▏ ${humanBytes(done)}/${humanBytes(e.total)}` +
        (rate ? `  ${humanBytes(rate)}/s` : "") + (left !== undefined && done < e.total ? `  ${left}s` : "");
      options.write(`\r\x1b[K${line}`);
    } else {
      const decile = Math.floor(pct / 10);
      if (decile > lastDecile) {
        lastDecile = decile;
        options.write(`${e.status}: ${pct}% (${humanBytes(done)} of ${humanBytes(e.total)})\n`);
      }
    }
  };
}

/** The `pull` command. */
export const pullCommand: Command = {
  name: "pull",
  summary: "get a model from Hugging Face, an Ollama registry or a URL (as `ollama pull`)",
  usage: ["pull REF [--insecure] [--token TOKEN]"],
  examples: [
    "llama-mgr pull hf.co/bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M",
    "llama-mgr pull hf:unsloth/Qwen3-4B-GGUF",
    "llama-mgr pull qwen3:4b",
    "llama-mgr pull --insecure 127.0.0.1:5000/library/smol:latest",
    "llama-mgr pull https://example.org/models/m.gguf",
  ],
  details: [
    "Hugging Face: the quant by tag (any case; default as llama.cpp's -hf: Q4_K_M, then Q8_0, then the first),",
    "every part of a split model and a matching mmproj, into the Hugging Face cache (HF_HOME, HF_HUB_CACHE);",
    "HF_TOKEN or --token for gated repos, HF_ENDPOINT for a mirror, HF_HUB_OFFLINE=1 for the cache only.",
    "Ollama names: from registry.ollama.ai (or the host the name starts with) into <data>/ollama; a model",
    "llama.cpp cannot load is refused before it is downloaded. Downloads resume after an interruption.",
  ].join("\n"),
  flags: {
    insecure: { type: "boolean", description: "plain HTTP to a registry" },
    token: { type: "string", value: "TOKEN", description: "Hugging Face token (default $HF_TOKEN)" },
  },
  async run(ctx, args) {
    const ref = args.positionals[0];
    if (!ref) throw new UserError("pull needs a model", { hint: "llama-mgr pull qwen3:4b" });
    const config = await ctx.config();
    const show = ctx.quiet ? undefined : pullDisplay({
      tty: Deno.stderr.isTerminal(),
      write: (s) => Deno.stderr.writeSync(enc.encode(s)),
    });
    const abort = new AbortController();
    const stop = () => abort.abort();
    Deno.addSignalListener("SIGINT", stop);
    try {
      const r = await pullModel(ctx.paths, config, ref, {
        insecure: bool(args, "insecure"),
        token: str(args, "token"),
        instance: ctx.instance,
        onProgress: show,
        signal: abort.signal,
      });
      if (show && Deno.stderr.isTerminal()) Deno.stderr.writeSync(enc.encode("\n"));
      if (ctx.json) ctx.print(JSON.stringify(r, null, 2));
      else {ctx.print(
          `pulled ${r.name} (${r.fetchedBytes ? humanBytes(r.fetchedBytes) + " fetched" : "up to date"})`,
        );}
      return 0;
    } catch (err) {
      if (abort.signal.aborted) {
        throw new UserError("pull stopped", {
          hint: "run it again to go on from where it stopped",
          exitCode: 130,
        });
      }
      throw err;
    } finally {
      Deno.removeSignalListener("SIGINT", stop);
    }
  },
};
