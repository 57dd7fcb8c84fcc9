/**
 * Where the stores are looked for. Ollama's Linux installer runs the server as user `ollama` whose home is
 * `/usr/share/ollama`, so most Linux users' pulled models are in its store, not in `~/.ollama`.
 */
import { assertEquals } from "./_assert.ts";
import { OLLAMA_SYSTEM_DIR, ollamaDir, ollamaDirs } from "../lib/gguf/sources.ts";

Deno.test("Ollama's store is looked for where Ollama keeps it", async (t) => {
  await t.step("OLLAMA_MODELS, when set, is the only place", () => {
    assertEquals(ollamaDirs({ HOME: "/home/me", OLLAMA_MODELS: "/data/ollama" }), ["/data/ollama"]);
  });
  await t.step("else the user's store, and on Linux the system service's store too", () => {
    const dirs = ollamaDirs({ HOME: "/home/me" });
    assertEquals(
      dirs,
      Deno.build.os === "linux"
        ? ["/home/me/.ollama/models", OLLAMA_SYSTEM_DIR]
        : ["/home/me/.ollama/models"],
    );
    assertEquals(ollamaDir({ HOME: "/home/me" }), "/home/me/.ollama/models");
  });
  await t.step("the service's own HOME does not list its store twice", () => {
    assertEquals(ollamaDirs({ HOME: "/usr/share/ollama" }), [OLLAMA_SYSTEM_DIR]);
  });
});
