/**
 * The llama.cpp git checkout of an instance: clone or fetch from a URL, a local path or a git bundle, resolve
 * a branch, tag or commit, and check it out.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { run } from "../util/run.ts";
import { exists, removeAll } from "../util/fs.ts";
import { UserError } from "../util/errors.ts";

/** Where llama.cpp comes from when `--repo-url` is not given. */
export const DEFAULT_REPO_URL = "https://github.com/ggml-org/llama.cpp.git";

/** Options for git steps. */
export interface GitOptions {
  /** Append git's output here. */
  logFile?: string;
  /** Called with each output line (progress). */
  onLine?: (line: string) => void;
}

/** True for URLs git fetches over a network (as opposed to a path or bundle on disk). */
export function isRemoteUrl(url: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !url.startsWith("file://") || /^[\w.-]+@[\w.-]+:/.test(url);
}

/** Makes a local path absolute (so later fetches work from any directory); URLs pass through. */
export function normalizeRepoUrl(url: string, cwd = Deno.cwd()): string {
  if (isRemoteUrl(url) || url.startsWith("file://")) return url;
  return isAbsolute(url) ? url : resolve(cwd, url);
}

async function git(args: string[], cwd: string | undefined, options: GitOptions, check = true) {
  return await run(["git", ...args], {
    cwd,
    logFile: options.logFile,
    onLine: (l) => options.onLine?.(l),
    check,
    env: { GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" },
  });
}

/**
 * Clones (first time) or fetches (later) `repoUrl` into `srcDir`. A failed first clone leaves no directory.
 * Branches land in `refs/remotes/origin/*`, tags in `refs/tags/*`, the remote's HEAD in
 * `refs/llama-mgr/remote-head`.
 */
export async function fetchSource(srcDir: string, repoUrl: string, options: GitOptions = {}): Promise<void> {
  const url = normalizeRepoUrl(repoUrl);
  if (!isRemoteUrl(url) && !url.startsWith("file://") && !(await exists(url))) {
    throw new UserError(`--repo-url ${repoUrl}: no such file or directory`, {
      hint: "give an https URL, a path to a llama.cpp checkout, or a git bundle file",
    });
  }
  const fresh = !(await exists(`${srcDir}/.git`));
  if (fresh) {
    await removeAll(srcDir);
    await Deno.mkdir(srcDir, { recursive: true });
    await git(["init", "-q"], srcDir, options);
    await git(["remote", "add", "origin", url], srcDir, options);
    if (isRemoteUrl(url)) {
      // Blobless: full history (for the build number) without every old file version.
      await git(["config", "remote.origin.promisor", "true"], srcDir, options);
      await git(["config", "remote.origin.partialclonefilter", "blob:none"], srcDir, options);
    }
  } else {
    const current = (await git(["remote", "get-url", "origin"], srcDir, options, false)).stdout.trim();
    if (current !== url) await git(["remote", "set-url", "origin", url], srcDir, options);
  }
  try {
    await git(
      [
        "fetch",
        "--progress",
        "--force",
        "--tags",
        "origin",
        "+refs/heads/*:refs/remotes/origin/*",
        "+HEAD:refs/llama-mgr/remote-head",
      ],
      srcDir,
      options,
    );
  } catch (err) {
    if (fresh) await removeAll(srcDir);
    throw new UserError(`could not fetch llama.cpp from ${repoUrl}`, {
      hint: "check the URL or path and your network; git said:\n" + (err as Error).message,
      cause: err,
    });
  }
}

/**
 * Resolves a branch, tag or commit (full or abbreviated) to a full commit id; `HEAD` or undefined is the
 * remote's default branch.
 */
export async function resolveRef(
  srcDir: string,
  ref: string | undefined,
  options: GitOptions = {},
): Promise<string> {
  const tryRev = async (rev: string) => {
    const r = await git(["rev-parse", "--verify", "--quiet", `${rev}^{commit}`], srcDir, options, false);
    return r.code === 0 ? r.stdout.trim() : undefined;
  };
  if (!ref || ref === "HEAD") {
    const c = await tryRev("refs/llama-mgr/remote-head");
    if (c) return c;
    throw new UserError("the repository has no HEAD commit");
  }
  for (const rev of [`refs/remotes/origin/${ref}`, `refs/tags/${ref}`]) {
    const c = await tryRev(rev);
    if (c) return c;
  }
  if (/^[0-9a-f]{4,40}$/i.test(ref)) {
    const c = await tryRev(ref);
    if (c) return c;
    // A commit that no branch or tag reaches: ask the remote for it directly.
    const f = await git(["fetch", "--quiet", "origin", ref], srcDir, options, false);
    if (f.code === 0) {
      const c2 = await tryRev("FETCH_HEAD");
      if (c2?.startsWith(ref.toLowerCase())) return c2;
    }
  }
  const branches =
    (await git(["for-each-ref", "--format=%(refname:lstrip=3)", "refs/remotes/origin"], srcDir, options))
      .stdout.split("\n").filter(Boolean).slice(0, 10);
  const tags = (await git(
    ["for-each-ref", "--sort=-creatordate", "--format=%(refname:lstrip=2)", "refs/tags"],
    srcDir,
    options,
  ))
    .stdout.split("\n").filter(Boolean).slice(0, 10);
  throw new UserError(`--branch '${ref}' is not a branch, tag or commit of the repository`, {
    hint: `branches: ${branches.join(", ") || "(none)"}; recent tags: ${tags.join(", ") || "(none)"}`,
  });
}

/** Checks out a commit (detached), discarding local changes to tracked files. */
export async function checkoutCommit(
  srcDir: string,
  commit: string,
  options: GitOptions = {},
): Promise<void> {
  await git(
    ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", commit],
    srcDir,
    options,
  );
}

/** The commit currently checked out, or undefined when there is no checkout. */
export async function currentCommit(srcDir: string): Promise<string | undefined> {
  if (!(await exists(`${srcDir}/.git`))) return undefined;
  const r = await run(["git", "rev-parse", "HEAD"], { cwd: srcDir, check: false });
  return r.code === 0 ? r.stdout.trim() : undefined;
}
