/**
 * `llama-mgr create` as a user runs it (the CLI in a subprocess, OLLAMA_HOST at a real daemon): a Modelfile
 * FROM a local GGUF (uploaded as a blob) with TEMPLATE, SYSTEM and PARAMETER becomes a model; a Modelfile
 * that does not parse names its line.
 */
import { join } from "node:path";
import { assertEquals, assertStringIncludes } from "./_assert.ts";
import { cli, smolModelPath, tempDir } from "./_fixtures.ts";
import { withDaemon } from "./_daemon.ts";

Deno.test("cli create: a Modelfile FROM a local GGUF with TEMPLATE, SYSTEM and PARAMETER", async () => {
  const tmp = await tempDir();
  try {
    await Deno.symlink(await smolModelPath(), join(tmp.path, "smol.gguf"));
    const chatml = await Deno.readTextFile(new URL("./templates/chatml.gotmpl", import.meta.url));
    await Deno.writeTextFile(
      join(tmp.path, "Modelfile"),
      `# a pirate\nFROM ./smol.gguf\nTEMPLATE """${chatml}"""\nSYSTEM You are a pirate.\n` +
        "PARAMETER temperature 0.2\nPARAMETER stop <|im_end|>\n",
    );
    await Deno.writeTextFile(join(tmp.path, "Bad"), "FROM ./smol.gguf\nTEMPERATURE 1\n");
    await withDaemon({}, async ({ url }) => {
      const env = { OLLAMA_HOST: url };
      const run = (...args: string[]) => cli(["-d", join(tmp.path, "data"), ...args], { env, cwd: tmp.path });
      const made = await run("create", "pirate", "-f", "Modelfile");
      assertEquals(made.code, 0, made.stderr);
      assertEquals(made.stdout.trim(), "success");
      assertStringIncludes(made.stderr, "copying file sha256:");
      assertStringIncludes(made.stderr, "parsing GGUF");
      const show = await (await fetch(`${url}/api/show`, { method: "POST", body: '{"model":"pirate"}' }))
        .json();
      assertEquals(show.system, "You are a pirate.");
      assertEquals(show.template, chatml);
      assertStringIncludes(show.parameters, "temperature");
      const chat = await (await fetch(`${url}/api/chat`, {
        method: "POST",
        body: JSON.stringify({
          model: "pirate",
          messages: [{ role: "user", content: "Hi" }],
          stream: false,
          options: { num_predict: 4 },
        }),
      })).json();
      assertEquals(chat.done, true);
      const bad = await run("create", "x", "-f", "Bad");
      assertEquals(bad.code !== 0, true);
      assertStringIncludes(bad.stderr, "(line 2)");
      const missing = await run("create", "x", "-f", "Nope");
      assertStringIncludes(missing.stderr, "no Modelfile at Nope");
    });
  } finally {
    await tmp.cleanup();
  }
});
