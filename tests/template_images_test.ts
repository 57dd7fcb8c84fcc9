/**
 * Images in a prompt the daemon renders from a request's own template: Ollama's `[img-N]` tags (as its
 * server/prompt.go places them), then llama-server's `/completion` prompt object with its media marker where
 * each tag was and the images beside the text, in order.
 */
import { assertEquals, assertThrows } from "./_assert.ts";
import { imageTagged, multimodalPrompt } from "../lib/daemon/ollama/images.ts";
import { renderGoTemplate } from "../lib/daemon/ollama/template_exec.ts";
import { HttpError } from "../lib/daemon/http.ts";

const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==";
const JPEG =
  "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHSEfHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/";

Deno.test("image tags go where the prompt says [img], else first", () => {
  assertEquals(imageTagged("What is this?", 1), "[img-0]What is this?");
  assertEquals(imageTagged("Compare [img] and [img].", 2), "Compare [img-0] and [img-1].");
  // One [img] for two images: the first takes it, the second goes first (Ollama's order).
  assertEquals(imageTagged("Is [img] like this?", 2), "[img-1]Is [img-0] like this?");
  assertEquals(imageTagged("no images", 0), "no images");
});

Deno.test("the rendered prompt becomes llama-server's prompt object with its marker", () => {
  const template = "{{ if .System }}SYS: {{ .System }}\n{{ end }}USER: {{ .Prompt }}\nBOT:";
  const rendered = renderGoTemplate(template, {
    messages: [{ role: "system", content: "Be brief." }, { role: "user", content: imageTagged("Same?", 2) }],
  });
  assertEquals(rendered, "SYS: Be brief.\nUSER: [img-0][img-1]Same?\nBOT:");
  const marker = "<__media_k3y__>";
  assertEquals(multimodalPrompt("", rendered, [PNG, `data:image/jpeg;base64,${JPEG}`], marker), {
    prompt_string: `SYS: Be brief.\nUSER: ${marker}${marker}Same?\nBOT:`,
    multimodal_data: [PNG, JPEG],
  });
  // Tags out of number order: llama-server pairs markers and images by position, so image 1 goes first.
  assertEquals(multimodalPrompt("", imageTagged("Is [img] like this?", 2), [PNG, JPEG], marker), {
    prompt_string: `${marker}Is ${marker} like this?`,
    multimodal_data: [JPEG, PNG],
  });
  // A conversation given back keeps an earlier turn's tag as text; only this turn's tags become markers.
  const prior = "USER: [img-0]Old\nBOT: A cat.";
  assertEquals(multimodalPrompt(prior, "USER: [img-0]New\nBOT:", [PNG], marker), {
    prompt_string: `${prior}USER: ${marker}New\nBOT:`,
    multimodal_data: [PNG],
  });
});

Deno.test("a .Messages template sees the user message's images and their tags", () => {
  const template = "{{ range .Messages }}{{ .Role }}{{ if .Images }} ({{ len .Images }} image){{ end }}: " +
    "{{ .Content }}\n{{ end }}assistant:";
  assertEquals(
    renderGoTemplate(template, {
      messages: [{ role: "user", content: imageTagged("What is [img]?", 1), images: [PNG] }],
    }),
    "user (1 image): What is [img-0]?\nassistant:",
  );
});

Deno.test("a template that drops the prompt, or an image that is not base64, is a 400 saying so", () => {
  const err = assertThrows(() => multimodalPrompt("", "USER: hi\nBOT:", [PNG], "<m>"), HttpError);
  assertEquals(err.status, 400);
  assertEquals(
    err.message,
    "the template leaves out image 0 (its place, [img-0], is in the prompt): a template given with images " +
      "must print .Prompt, or .Content of the user's message",
  );
  const bad = assertThrows(() => multimodalPrompt("", "[img-0]", ["not an image!"], "<m>"), HttpError);
  assertEquals(bad.message, "images[0] is not base64: send each image's file bytes base64-encoded");
});
