/**
 * `llama-mgr run` as a user runs it, with a real daemon (started by the command) and a real model: one-shot
 * prompts (arguments, piped input, JSON format, timings), and the interactive session driven through a real
 * terminal (tmux): parameters, an answer stopped with Ctrl-C that keeps the session, multi-line input, history,
 * /show, /clear, /save, /bye and Ctrl-D.
 */
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { cliWorld } from "./_daemon.ts";

const MODEL = "smollm2:135m-q4_1";
const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;

async function sh(cmd: string, args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return new TextDecoder().decode(o.stdout);
}

async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  ms = 60_000,
  shown?: () => Promise<string>,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${shown ? `; the screen:\n${await shown()}` : ""}`);
}

Deno.test({
  name: "run answers one prompt, and holds an interactive session in a terminal",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const w = await cliWorld({ smol: true });
    const { data, config, url } = w;
    const port = Number(new URL(url).port);
    const globals = ["-d", data, "--config", config, "-i", "cpu"];
    const run = (args: string[], stdin?: string) => w.run(["run", MODEL, ...args], stdin);
    const socket = `llama-mgr-test-${port}`;
    const tmux = (...args: string[]) => sh("tmux", ["-L", socket, ...args]);
    const screen = () => tmux("capture-pane", "-p", "-t", "s", "-S", "-200");
    try {
      await t.step("a prompt as arguments is answered once, with timings on --verbose", async () => {
        const r = await run(["Say", "hello.", "--verbose"]);
        assertEquals(r.code, 0, r.stderr);
        assert(r.stdout.trim().length > 0, "no answer");
        assertStringIncludes(r.stderr, `starting a daemon at ${url}`);
        assertMatch(r.stderr, /eval count:\s+\d+ token\(s\)/);
        assertMatch(r.stderr, /eval rate:\s+[\d.]+ tokens\/s/);
      });

      await t.step("piped input is the prompt; --format json answers in JSON", async () => {
        // A model of its own with short answers: this small model can go on inside a JSON answer for a long time.
        const created = await fetch(`${url}/api/create`, {
          method: "POST",
          body: JSON.stringify({
            model: "smol-short",
            from: MODEL,
            parameters: { num_predict: 48 },
            stream: false,
          }),
        });
        assertEquals(created.status, 200, await created.text());
        const short = (args: string[], stdin?: string) => w.run(["run", "smol-short", ...args], stdin);
        const piped = await short([], "What is the capital of France?");
        assertEquals(piped.code, 0, piped.stderr);
        assert(piped.stdout.trim().length > 0, "no answer to piped input");
        const json = await short(["--format", "json", "List three colours as JSON."]);
        assertEquals(json.code, 0, json.stderr);
        assertMatch(json.stdout.trim(), /^[{[]/, json.stdout);
      });

      await t.step("the session: Ctrl-C stops an answer, the session goes on", async () => {
        await tmux(
          "new-session",
          "-d",
          "-s",
          "s",
          "-x",
          "150",
          "-y",
          "60",
          `bash -c 'OLLAMA_HOST=127.0.0.1:${port} NO_COLOR=1 ${Deno.execPath()} run -A ${MAIN} ${
            globals.join(" ")
          } run ${MODEL}; echo EXITED $?; sleep 60'`,
        );
        await waitFor("the prompt", async () => (await screen()).includes(">>>"));
        await tmux("send-keys", "-t", "s", "/set parameter num_predict 2000", "Enter");
        await waitFor("the parameter", async () => (await screen()).includes("Set parameter 'num_predict'"));
        const ask = "Tell me a very long story about a dragon and a knight.";
        // What follows the question's own line: the answer may repeat words of it ("a dragon and a knight.").
        const afterAsk = (screen: string) => {
          const at = screen.indexOf(ask);
          return at < 0 ? "" : screen.slice(at + ask.length);
        };
        await tmux("send-keys", "-t", "s", ask, "Enter");
        // Wait for the answer to be under way, then stop it.
        await waitFor(
          "the answer to begin",
          async () => {
            const s = afterAsk(await screen());
            return s.replace(/\s/g, "").length > 20;
          },
          60_000,
          screen,
        );
        await tmux("send-keys", "-t", "s", "C-c");
        await waitFor(
          "the prompt after Ctrl-C",
          async () => {
            const s = afterAsk(await screen());
            return /\n>>> *$/.test(s.trimEnd() + " ") || s.trimEnd().endsWith(">>>");
          },
          60_000,
          screen,
        );
        assert(!(await screen()).includes("EXITED"), "Ctrl-C during an answer ended the session");
      });

      await t.step("multi-line input, history, /show, /clear and /save", async () => {
        await tmux("send-keys", "-t", "s", "/set parameter num_predict 4", "Enter");
        await tmux("send-keys", "-t", "s", '"""Line one', "Enter");
        await waitFor("the continuation prompt", async () => /^\.\.\.\s*$/m.test(await screen()));
        await tmux("send-keys", "-t", "s", 'line two"""', "Enter");
        await waitFor("an answer to the multi-line message", async () => {
          const s = (await screen()).split('line two"""')[1] ?? "";
          return s.includes(">>>");
        });
        // Up recalls the last line typed.
        await tmux("send-keys", "-t", "s", "Up");
        await waitFor("history", async () => (await screen()).trimEnd().endsWith('>>> line two"""'));
        await tmux("send-keys", "-t", "s", "C-u", "/show info", "Enter");
        await waitFor("/show info", async () => /architecture\s+llama/.test(await screen()));
        await tmux("send-keys", "-t", "s", "/clear", "Enter");
        await waitFor("/clear", async () => (await screen()).includes("Cleared session context"));
        await tmux("send-keys", "-t", "s", "/set system You are terse.", "Enter");
        await tmux("send-keys", "-t", "s", "/save terse-smol", "Enter");
        await waitFor("/save", async () => (await screen()).includes("Created new model 'terse-smol'"));
        const shown = await (await fetch(`${url}/api/show`, {
          method: "POST",
          body: JSON.stringify({ model: "terse-smol" }),
        })).json();
        assertEquals(shown.system, "You are terse.");
        assertMatch(shown.parameters, /num_predict\s+4/);
      });

      await t.step("/bye leaves with status 0; Ctrl-D on an empty line too", async () => {
        await tmux("send-keys", "-t", "s", "/bye", "Enter");
        await waitFor("the exit", async () => (await screen()).includes("EXITED 0"));
        await tmux("kill-session", "-t", "s");
        await tmux(
          "new-session",
          "-d",
          "-s",
          "s",
          `bash -c 'OLLAMA_HOST=127.0.0.1:${port} ${Deno.execPath()} run -A ${MAIN} ${
            globals.join(" ")
          } run ${MODEL}; echo EXITED $?; sleep 60'`,
        );
        await waitFor("the prompt", async () => (await screen()).includes(">>>"));
        // The history file holds the earlier session's lines: Up recalls them in a new session.
        await tmux("send-keys", "-t", "s", "Up");
        await waitFor("saved history", async () => (await screen()).trimEnd().endsWith(">>> /bye"));
        await tmux("send-keys", "-t", "s", "C-u", "C-d");
        await waitFor("the exit on Ctrl-D", async () => (await screen()).includes("EXITED 0"));
      });
    } finally {
      await tmux("kill-server").catch(() => "");
      await w.close();
    }
  },
});
