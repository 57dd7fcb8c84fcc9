/**
 * The verbs of Ollama's command line, against the daemon's API: `list`, `ps`, `stop`, `show`, `rm`, `cp`. They
 * talk to the daemon at `OLLAMA_HOST` (starting one in the background when needed) and print what Ollama's
 * CLI prints, or the API's JSON with `--json`.
 *
 * @module
 */
import type { Command, Context } from "./command.ts";
import { table } from "./command.ts";
import { bool, type ParsedArgs } from "./args.ts";
import { connect } from "./connect.ts";
import { DaemonApiError, type DaemonClient } from "../lib/daemon/client.ts";
import { closestNames } from "../lib/models/names.ts";
import { UserError } from "../lib/util/errors.ts";

/** Bytes as Ollama's CLI shows them (decimal units: `1.9 GB`, `135 MB`). */
export function humanBytes(n: number): string {
  const units: [number, string][] = [[1e12, "TB"], [1e9, "GB"], [1e6, "MB"], [1e3, "KB"]];
  for (const [v, u] of units) {
    if (n >= v) {
      const x = n / v;
      return x >= 10 || Number.isInteger(x) ? `${Math.floor(x)} ${u}` : `${x.toFixed(1)} ${u}`;
    }
  }
  return `${n} B`;
}

/** A time relative to now as Ollama's CLI says it: `3 weeks ago`, `4 minutes from now`, `Forever`. */
export function humanTime(at: Date, now = new Date()): string {
  const ms = at.getTime() - now.getTime();
  if (!Number.isFinite(ms) || Math.abs(ms) > 100 * 365 * 86400_000) return ms > 0 ? "Forever" : "Never";
  const s = Math.abs(ms) / 1000;
  const steps: [number, string][] = [
    [31536000, "year"],
    [2592000, "month"],
    [604800, "week"],
    [86400, "day"],
    [
      3600,
      "hour",
    ],
    [60, "minute"],
    [1, "second"],
  ];
  let phrase = "Less than a second";
  for (const [size, unit] of steps) {
    if (s >= size) {
      const n = Math.floor(s / size);
      phrase = n === 1 ? (unit === "hour" ? "About an hour" : `1 ${unit}`) : `${n} ${unit}s`;
      break;
    }
  }
  return ms >= 0 ? `${phrase} from now` : `${phrase} ago`;
}

/** A 404 for a model gets the closest names the daemon has as its hint. */
async function withHint<T>(client: DaemonClient, name: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (!(err instanceof DaemonApiError) || err.status !== 404) throw err;
    const tags = await client.json<{ models?: { name: string }[] }>("GET", "/api/tags").catch(() => ({}));
    const near = closestNames(
      name.toLowerCase(),
      (tags as { models?: { name: string }[] }).models?.map((m) => m.name) ?? [],
    );
    throw new DaemonApiError(404, err.message, {
      hint: near.length
        ? `did you mean ${near.map((n) => `'${n}'`).join(", ")}? (\`llama-mgr list\` lists them)`
        : "`llama-mgr list` lists the models",
    });
  }
}

function needs(args: ParsedArgs, n: number, what: string, example: string): string[] {
  const names = args.positionals;
  if (names.length < n) throw new UserError(`${what}`, { hint: example });
  return names;
}

interface ListModel {
  name: string;
  digest?: string;
  size?: number;
  modified_at?: string;
}

/** `list`: the models the daemon serves. */
export const listCommand: Command = {
  name: "list",
  summary: "list the models the daemon serves (as `ollama list`)",
  usage: ["list [--json]"],
  examples: ["llama-mgr list", "llama-mgr list --json | jq '.[].name'"],
  flags: {},
  async run(ctx) {
    const client = await connect(ctx, { start: true });
    const { models = [] } = await client.json<{ models?: ListModel[] }>("GET", "/api/tags");
    if (ctx.json) {
      ctx.print(JSON.stringify(models, null, 2));
      return 0;
    }
    ctx.print(table(
      ["NAME", "ID", "SIZE", "MODIFIED"],
      models.map((m) => [
        m.name,
        (m.digest ?? "").replace(/^sha256:/, "").slice(0, 12),
        humanBytes(m.size ?? 0),
        m.modified_at ? humanTime(new Date(m.modified_at)) : "",
      ]),
    ));
    return 0;
  },
};

interface PsModel extends ListModel {
  size_vram?: number;
  expires_at?: string;
  context_length?: number;
  /** What llama-mgr's daemon adds: bytes per device, GPU layers, requests running, slots. */
  llama_mgr?: { devices?: Record<string, number>; gpu_layers?: number; requests?: number; slots?: number };
}

interface PsResponse {
  models?: PsModel[];
  llama_mgr?: { waiting?: number; devices?: { name: string; budget: number; used: number }[] };
}

/** Where a loaded model's memory is, as `ollama ps` says it. */
function processor(m: PsModel): string {
  const size = m.size ?? 0;
  const vram = m.size_vram ?? 0;
  if (size === 0 || vram === 0) return "100% CPU";
  if (vram >= size) return "100% GPU";
  const gpu = Math.round((vram / size) * 100);
  return `${100 - gpu}%/${gpu}% CPU/GPU`;
}

/** `ps`: the models loaded now. */
export const psCommand: Command = {
  name: "ps",
  summary: "list the models loaded now (as `ollama ps`)",
  usage: ["ps [--json]"],
  examples: ["llama-mgr ps"],
  flags: {},
  async run(ctx) {
    const client = await connect(ctx);
    const ps: PsResponse = await client.running() ? await client.json<PsResponse>("GET", "/api/ps") : {};
    const models = ps.models ?? [];
    if (ctx.json) {
      ctx.print(JSON.stringify(models, null, 2));
      return 0;
    }
    ctx.print(table(
      ["NAME", "ID", "SIZE", "PROCESSOR", "DEVICE", "SLOTS", "CONTEXT", "UNTIL"],
      models.map((m) => {
        const extra = m.llama_mgr;
        const slots = extra?.requests === undefined
          ? ""
          : `${extra.requests}${extra.slots !== undefined ? `/${extra.slots}` : ""}`;
        return [
          m.name,
          (m.digest ?? "").replace(/^sha256:/, "").slice(0, 12),
          humanBytes(m.size ?? 0),
          processor(m),
          Object.keys(extra?.devices ?? {}).join("+"),
          slots,
          String(m.context_length ?? ""),
          m.expires_at ? humanTime(new Date(m.expires_at)) : "",
        ];
      }),
    ));
    const extra = ps.llama_mgr;
    if (extra) {
      const budgets = (extra.devices ?? []).map((d) =>
        `${d.name} ${humanBytes(d.used)} of ${humanBytes(d.budget)}`
      );
      ctx.print(
        `queue: ${extra.waiting ?? 0} waiting${budgets.length ? `; memory: ${budgets.join(", ")}` : ""}`,
      );
    }
    return 0;
  },
};

/** `stop`: unloads a model now. */
export const stopCommand: Command = {
  name: "stop",
  summary: "unload a running model (as `ollama stop`)",
  usage: ["stop MODEL"],
  examples: ["llama-mgr stop qwen3:4b"],
  flags: {},
  async run(ctx, args) {
    const [name] = needs(
      args,
      1,
      "stop needs a model",
      "llama-mgr stop qwen3:4b (`llama-mgr ps` lists them)",
    );
    const client = await connect(ctx);
    const loaded = await client.running()
      ? (await client.json<{ models?: PsModel[] }>("GET", "/api/ps")).models ?? []
      : [];
    const key = name.toLowerCase().includes(":") ? name.toLowerCase() : `${name.toLowerCase()}:latest`;
    if (!loaded.some((m) => m.name.toLowerCase() === key || m.name.toLowerCase() === name.toLowerCase())) {
      throw new UserError(`couldn't find model "${name}" to stop`, {
        hint: loaded.length
          ? `running: ${loaded.map((m) => m.name).join(", ")}`
          : "no model is running (`llama-mgr ps`)",
      });
    }
    await withHint(client, name, () => client.json("POST", "/api/generate", { model: name, keep_alive: 0 }));
    ctx.info(`stopped '${name}'`);
    return 0;
  },
};

/** What `/api/show` answers, as far as the CLI prints it. */
export interface ShowResponse {
  modelfile?: string;
  parameters?: string;
  template?: string;
  system?: string;
  license?: string | string[];
  details?: { family?: string; parameter_size?: string; quantization_level?: string };
  model_info?: Record<string, unknown>;
  capabilities?: string[];
}

/** `show`: what a model is, or one part of it. */
export const showCommand: Command = {
  name: "show",
  summary: "show a model's facts, or its Modelfile, parameters, template, system prompt or license",
  usage: ["show MODEL [--modelfile|--parameters|--template|--system|--license] [--json]"],
  examples: ["llama-mgr show qwen3:4b", "llama-mgr show qwen3:4b --modelfile"],
  flags: {
    modelfile: { type: "boolean", description: "the Modelfile" },
    parameters: { type: "boolean", description: "the parameters" },
    template: { type: "boolean", description: "the chat template" },
    system: { type: "boolean", description: "the system prompt" },
    license: { type: "boolean", description: "the license" },
  },
  async run(ctx, args) {
    const [name] = needs(args, 1, "show needs a model", "llama-mgr show qwen3:4b");
    const client = await connect(ctx, { start: true });
    const res = await withHint(
      client,
      name,
      () => client.json<ShowResponse>("POST", "/api/show", { model: name }),
    );
    if (ctx.json) {
      ctx.print(JSON.stringify(res, null, 2));
      return 0;
    }
    const license = Array.isArray(res.license) ? res.license.join("\n") : res.license ?? "";
    for (const part of ["modelfile", "parameters", "template", "system", "license"] as const) {
      if (bool(args, part)) {
        ctx.print(part === "license" ? license : String(res[part] ?? ""));
        return 0;
      }
    }
    ctx.print(showSummary(res, license));
    return 0;
  },
};

/** The sections `ollama show` prints (also `/show info` in `run`). */
export function showSummary(res: ShowResponse, license: string): string {
  const info = res.model_info ?? {};
  const arch = String(info["general.architecture"] ?? res.details?.family ?? "");
  const rows: [string, unknown][] = [
    ["architecture", arch],
    ["parameters", res.details?.parameter_size],
    ["context length", info[`${arch}.context_length`]],
    ["embedding length", info[`${arch}.embedding_length`]],
    ["quantization", res.details?.quantization_level],
  ];
  const out = ["  Model"];
  for (const [k, v] of rows) if (v !== undefined && v !== "") out.push(`    ${k.padEnd(20)}${v}`);
  if (res.capabilities?.length) out.push("", "  Capabilities", ...res.capabilities.map((c) => `    ${c}`));
  const params = (res.parameters ?? "").split("\n").filter((l) => l.trim());
  if (params.length) {
    out.push(
      "",
      "  Parameters",
      ...params.map((l) => {
        const [k, ...v] = l.trim().split(/\s+/);
        return `    ${k.padEnd(20)}${v.join(" ")}`;
      }),
    );
  }
  if (res.system) out.push("", "  System", ...res.system.split("\n").slice(0, 5).map((l) => `    ${l}`));
  if (license.trim()) {
    out.push(
      "",
      "  License",
      ...license.trim().split("\n").slice(0, 3).map((l) => `    ${l}`),
    );
  }
  return out.join("\n") + "\n";
}

/** `rm`: deletes model names (and files llama-mgr itself made). */
export const rmCommand: Command = {
  name: "rm",
  summary: "delete models (names made with cp/create, and files llama-mgr wrote; never another tool's)",
  usage: ["rm MODEL [MODEL...]"],
  examples: ["llama-mgr rm my-copy", "llama-mgr rm qwen2.5-0.5b-Q4_K_M"],
  flags: {},
  async run(ctx: Context, args: ParsedArgs) {
    const names = needs(args, 1, "rm needs a model", "llama-mgr rm my-copy");
    const client = await connect(ctx, { start: true });
    for (const name of names) {
      await withHint(client, name, () => client.json("DELETE", "/api/delete", { model: name }));
      ctx.print(`deleted '${name}'`);
    }
    return 0;
  },
};

/** `cp`: another name for a model, with what was set on it. */
export const cpCommand: Command = {
  name: "cp",
  summary: "copy a model to another name (as `ollama cp`)",
  usage: ["cp SOURCE DESTINATION"],
  examples: ["llama-mgr cp qwen3:4b my-assistant"],
  flags: {},
  async run(ctx, args) {
    const [source, destination] = needs(
      args,
      2,
      "cp needs a source and a destination",
      "llama-mgr cp qwen3:4b my-assistant",
    );
    const client = await connect(ctx, { start: true });
    await withHint(client, source, () => client.json("POST", "/api/copy", { source, destination }));
    ctx.print(`copied '${source}' to '${destination}'`);
    return 0;
  },
};
