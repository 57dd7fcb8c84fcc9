/**
 * `llama-mgr install`: clone and build llama.cpp into an instance, side by side with the others.
 *
 * @module
 */
import type { Command, Context } from "./command.ts";
import { bool, int, type ParsedArgs, str } from "./args.ts";
import { installInstance } from "../lib/llamacpp/install.ts";
import { rollbackInstance } from "../lib/llamacpp/releases.ts";
import { splitCmakeArgs } from "../lib/llamacpp/cmake.ts";
import { type Arch, ARCHES, defaultInstanceName, readInstance } from "../lib/llamacpp/instances.ts";
import { detectGpu } from "../lib/llamacpp/detect.ts";
import { UserError } from "../lib/util/errors.ts";
import { createProgress } from "../lib/util/progress.ts";
import type { PythonOptions } from "../lib/config/schema.ts";

/** Python flags shared by `install` and `convert`. */
export const PYTHON_FLAGS = {
  torch: {
    type: "string",
    value: "cpu|auto|system|skip",
    description: "how torch is installed: CPU wheels (default), as llama.cpp pins it, the system's, or not",
  },
  "torch-version": { type: "string", value: "VER", description: "torch version instead of llama.cpp's pin" },
  "index-url": { type: "string", value: "URL", description: "extra package index (a private mirror)" },
  "find-links": {
    type: "string",
    value: "DIR|URL",
    description: "directory or page of wheels (local torch)",
  },
  python: { type: "string", value: "PY", description: "Python interpreter for the environment" },
  offline: { type: "boolean", description: "install Python packages without network access" },
} as const;

/** Merges the Python flags over the config's `python` section. */
export function pythonOptions(base: PythonOptions, args: ParsedArgs): PythonOptions {
  const torch = str(args, "torch");
  if (torch && !["cpu", "auto", "system", "skip"].includes(torch)) {
    throw new UserError(`--torch '${torch}' is not one of cpu, auto, system, skip`);
  }
  return {
    ...base,
    ...(torch ? { torch: torch as PythonOptions["torch"] } : {}),
    ...(str(args, "torch-version") ? { torch_version: str(args, "torch-version") } : {}),
    ...(str(args, "index-url") ? { index_url: str(args, "index-url") } : {}),
    ...(str(args, "find-links") ? { find_links: str(args, "find-links") } : {}),
    ...(str(args, "python") ? { python: str(args, "python") } : {}),
    ...(bool(args, "offline") ? { offline: true } : {}),
  };
}

/** Which instance a command acts on when `-i` is not given. */
export async function instanceNameFor(ctx: Context, arch?: string): Promise<string> {
  if (ctx.instance) return ctx.instance;
  const config = await ctx.config();
  const def = await defaultInstanceName(ctx.paths, config.default_instance);
  if (def) return def;
  return arch && arch !== "auto" ? arch : (await detectGpu()).arch;
}

/** The `install` command. */
export const installCommand: Command = {
  name: "install",
  summary: "clone and build llama.cpp into an instance (side by side, per GPU architecture)",
  usage: [
    "install [-i NAME] [--arch cpu|cuda|rocm|vulkan|metal|sycl] [--gpu-targets T,..] [--repo-url URL|PATH|BUNDLE]",
    "        [--branch REF] [--cmake-args ARGS] [--patch NAME,..] [--parallel N] [--pull-only|--update-only]",
    "        [--ignore-python] [--no-unity|--unity]",
    "install -i NAME --rollback",
  ],
  details: [
    "Without -i, install acts on the default instance, or creates one named after the detected backend.",
    "The build happens beside the instance's current build; the instance switches to it only after the build",
    "succeeded and `llama-server --version` runs. A failed build leaves the current one in use.",
    "The Python environment for the conversion scripts is made with uv; choose torch with --torch,",
    "--torch-version, --find-links (e.g. a directory holding a local torch wheel) or --index-url.",
    "A new instance builds llama-server; other tools are built the first time a command needs one.",
    "The libraries llama-server links compile in unity batches (less CPU time); an instance keeps how it was",
    "built; --no-unity (or build.unity: false) builds file by file, --unity switches back.",
    "An update keeps the release it replaces (build.keep_releases); --rollback switches back to it without",
    "a build. The config's build.profiles.<arch> and build.instances.<name> give GPU targets and cmake args.",
    "Before configuring, GPU builds are checked for what they need (Vulkan: headers, SPIR-V headers, glslc and",
    "the shader extensions the source uses; CUDA: cuBLAS, GPU targets nvcc supports). --patch applies a named",
    "source patch for a toolchain the release does not support: vulkan-no-coopmat builds Vulkan with a glslc",
    "that lacks GL_KHR_cooperative_matrix (Debian 12), leaving out the Intel Xe flash-attention decode shaders.",
  ].join("\n"),
  examples: [
    "llama-mgr install",
    'llama-mgr install -i rocm --arch rocm --gpu-targets gfx1100 --cmake-args="-DGGML_HIP_ROCWMMA_FATTN=ON"',
    "llama-mgr install -i cpu --arch cpu --repo-url ./llama.cpp.bundle --branch b6000 --parallel 2",
    "llama-mgr install --update-only",
    "llama-mgr install -i cpu --rollback",
    "llama-mgr install -i vulkan --arch vulkan --patch vulkan-no-coopmat",
    "llama-mgr install --torch-version 2.13.0 --find-links /opt/wheels",
  ],
  flags: {
    arch: {
      type: "string",
      value: "ARCH",
      description: `backend: ${ARCHES.join(", ")} or auto (default: detected)`,
    },
    "gpu-targets": {
      type: "string",
      value: "T,..",
      description: "CUDA compute capabilities or ROCm gfx targets",
    },
    "repo-url": { type: "string", value: "URL", description: "git URL, local checkout or git bundle" },
    branch: { type: "string", short: "b", value: "REF", description: "branch, tag or commit to build" },
    "cmake-args": {
      type: "string",
      value: "ARGS",
      description: 'extra cmake options, e.g. "-DGGML_CUDA_F16=ON"',
    },
    patch: {
      type: "string",
      value: "NAME,..",
      description: "apply named source patches (vulkan-no-coopmat); --patch none drops the instance's",
    },
    parallel: { type: "string", short: "j", value: "N", description: "build jobs (default: CPU count)" },
    targets: {
      type: "string",
      value: "T,..",
      description: "build targets (default: server and the common tools)",
    },
    "pull-only": { type: "boolean", description: "fetch and check out the source, do not build" },
    "update-only": { type: "boolean", description: "rebuild only when the source or configuration changed" },
    "ignore-python": { type: "boolean", description: "skip the Python environment for conversion scripts" },
    "no-ccache": { type: "boolean", description: "do not use ccache even when installed" },
    unity: {
      type: "boolean",
      description: "compile the server's libraries in unity batches (the default for a new instance)",
    },
    "no-unity": {
      type: "boolean",
      description: "compile file by file (slower; for debugging or a patch that clashes in a batch)",
    },
    rollback: { type: "boolean", description: "switch back to the release kept from before the last update" },
    wait: { type: "boolean", description: "wait for a running install of the same instance" },
    ...PYTHON_FLAGS,
  },
  async run(ctx, args) {
    if (args.positionals.length) {
      throw new UserError(`install takes no positional arguments (got '${args.positionals[0]}')`, {
        hint: "name the instance with -i NAME",
      });
    }
    if (bool(args, "pull-only") && bool(args, "update-only")) {
      throw new UserError("--pull-only and --update-only exclude each other");
    }
    const config = await ctx.config();
    const archFlag = str(args, "arch");
    if (archFlag && archFlag !== "auto" && !ARCHES.includes(archFlag as Arch)) {
      throw new UserError(`unknown --arch '${archFlag}'`, {
        hint: `use one of ${ARCHES.join(", ")} or auto`,
      });
    }
    const name = await instanceNameFor(ctx, archFlag);
    if (bool(args, "rollback")) {
      const others = [
        "arch",
        "gpu-targets",
        "repo-url",
        "branch",
        "cmake-args",
        "targets",
        "pull-only",
        "update-only",
      ].filter((f) => args.flags[f] !== undefined && args.flags[f] !== false);
      if (others.length) {
        throw new UserError(`--rollback takes no build options (got --${others.join(", --")})`, {
          hint: `roll back with \`llama-mgr install -i ${name} --rollback\` alone`,
        });
      }
      const r = await rollbackInstance(ctx.paths, name, {
        keep: config.build.keep_releases,
        wait: bool(args, "wait"),
        onInfo: ctx.info,
      });
      if (ctx.json) return void ctx.print(JSON.stringify(r, null, 2));
      ctx.print(
        `rolled back instance '${name}' to llama.cpp ${r.to.version} (${r.to.arch}) at ${
          r.to.commit.slice(0, 10)
        }, built ${r.to.builtAt.replace("T", " ").slice(0, 16)}, in ${r.seconds.toFixed(2)}s\n` +
          `  binaries: ${r.to.binDir}\n  --rollback again returns to ${
            r.from.commit.slice(0, 10)
          } (${r.from.version})`,
      );
      return;
    }
    if (bool(args, "unity") && bool(args, "no-unity")) {
      throw new UserError("--unity and --no-unity exclude each other");
    }
    const cmakeFlag = str(args, "cmake-args");
    const list = (v?: string) =>
      v === undefined ? undefined : v.split(",").map((s) => s.trim()).filter(Boolean);
    const parallel = int(args, "parallel", "install") ?? config.build.parallel;
    if (parallel !== undefined && parallel < 1) throw new UserError("--parallel must be at least 1");
    const before = await readInstance(ctx.paths, name);
    const result = await installInstance(ctx.paths, {
      name,
      repoUrl: str(args, "repo-url"),
      ref: str(args, "branch"),
      arch: archFlag as Arch | "auto" | undefined,
      gpuTargets: list(str(args, "gpu-targets")),
      cmakeArgs: cmakeFlag === undefined ? undefined : splitCmakeArgs(cmakeFlag),
      build: config.build,
      targets: list(str(args, "targets")),
      patches: str(args, "patch") === "none" ? [] : list(str(args, "patch")),
      parallel,
      pullOnly: bool(args, "pull-only"),
      updateOnly: bool(args, "update-only"),
      ignorePython: bool(args, "ignore-python") ? true : undefined,
      python: pythonOptions(config.python, args),
      ccache: config.build.ccache && !bool(args, "no-ccache"),
      unity: bool(args, "unity") ? true : bool(args, "no-unity") ? false : undefined,
      wait: bool(args, "wait"),
      quiet: ctx.quiet,
      onInfo: ctx.info,
      progress: (step) => createProgress(step, { quiet: ctx.quiet }),
    });
    if (ctx.json) {
      ctx.print(JSON.stringify({ ...result, previousCommit: before?.commit }, null, 2));
      return;
    }
    const r = result.record;
    switch (result.status) {
      case "up-to-date":
        ctx.print(`instance '${name}' is already up to date (${result.commit.slice(0, 10)}, ${r?.version})`);
        break;
      case "pulled":
        ctx.print(`fetched '${name}' source at ${result.commit.slice(0, 10)} (not built)`);
        break;
      default:
        ctx.print(
          `${result.status} instance '${name}': llama.cpp ${r?.version} (${r?.arch}) at ${
            result.commit.slice(0, 10)
          }` +
            ` in ${result.seconds.toFixed(1)}s\n  binaries: ${r?.binDir}` +
            (r?.venvDir ? `\n  python:   ${r.venvDir}` : ""),
        );
    }
  },
};
