/**
 * Images placed in a prompt the daemon renders itself (a request's own Go template), as Ollama places them:
 * the prompt gets Ollama's `[img-N]` tags (each `[img]` the prompt holds replaced in turn, else the tags put
 * first), the template is rendered, and the tags become llama-server's media marker, with the images sent as
 * `multimodal_data` beside the text (llama-server's `/completion` prompt object).
 *
 * @module
 */
import { HttpError } from "../http.ts";
import { upstreamAuth } from "../upstream/client.ts";

/**
 * The prompt with a tag per image, as Ollama's `imageTaggedMessages` makes it: each image takes the next
 * `[img]` of the prompt; the images the prompt has no `[img]` for go first, in order.
 *
 * @example
 * ```ts
 * imageTagged("Compare [img] with this.", 2); // "[img-1]Compare [img-0] with this."
 * ```
 */
export function imageTagged(prompt: string, count: number): string {
  let prefix = "";
  let text = prompt;
  for (let i = 0; i < count; i++) {
    const tag = `[img-${i}]`;
    if (text.includes("[img]")) text = text.replace("[img]", tag);
    else prefix += tag;
  }
  return prefix + text;
}

/** The base64 alphabet, with padding, white space allowed between groups as Go's decoder skips newlines. */
const BASE64 = /^[A-Za-z0-9+/\r\n]*={0,2}$/;

/** An image as base64 for llama-server: a data URL's payload, or the text as given. */
function base64Of(image: string, i: number): string {
  const data = image.startsWith("data:") ? image.slice(image.indexOf(",") + 1) : image;
  if (!data || !BASE64.test(data)) {
    throw new HttpError(400, `images[${i}] is not base64: send each image's file bytes base64-encoded`);
  }
  return data;
}

/**
 * llama-server's `/completion` prompt object for a rendered prompt with images: each `[img-N]` tag (its first
 * place after `prior`, the text of a conversation given back, which may carry tags of earlier turns as text)
 * becomes `marker`, and the images go in `multimodal_data` in that order. A tag the template left out is a
 * 400: the template must print the prompt (or the user message's content) for the image to have a place.
 *
 * @example
 * ```ts
 * multimodalPrompt("", "USER: [img-0]What is this?\nBOT:", ["iVBORw0KGgo="], "<__media__>");
 * // { prompt_string: "USER: <__media__>What is this?\nBOT:", multimodal_data: ["iVBORw0KGgo="] }
 * ```
 */
export function multimodalPrompt(
  prior: string,
  rendered: string,
  images: string[],
  marker: string,
): { prompt_string: string; multimodal_data: string[] } {
  // llama-server pairs markers with images by position, and tags need not be in number order ("[img-1]Is
  // [img-0] like this?"): the images go in the order their tags stand in the text.
  const places = images.map((_, i) => {
    const tag = `[img-${i}]`;
    const at = rendered.indexOf(tag);
    if (at < 0) {
      throw new HttpError(
        400,
        `the template leaves out image ${i} (its place, ${tag}, is in the prompt): a template given with ` +
          "images must print .Prompt, or .Content of the user's message",
      );
    }
    return { i, at, length: tag.length };
  }).sort((a, b) => a.at - b.at);
  let text = "";
  let from = 0;
  for (const p of places) {
    text += rendered.slice(from, p.at) + marker;
    from = p.at + p.length;
  }
  text += rendered.slice(from);
  return { prompt_string: prior + text, multimodal_data: places.map((p) => base64Of(images[p.i], p.i)) };
}

/** llama-server's marker before it became a random one per process. */
const DEFAULT_MEDIA_MARKER = "<__media__>";

/**
 * The text the llama-server at `url` stands for each image with: `/props`' `media_marker` (random per process
 * unless `LLAMA_MEDIA_MARKER` pins it), else the fixed one of builds from before it was given there.
 *
 * @example
 * ```ts
 * await mediaMarker("http://127.0.0.1:8080"); // "<__media_…__>"
 * ```
 */
export async function mediaMarker(url: string): Promise<string> {
  try {
    const res = await fetch(`${url}/props`, { headers: upstreamAuth(url) });
    const props = res.ok ? await res.json() : await res.body?.cancel();
    const marker = props?.media_marker;
    return typeof marker === "string" && marker ? marker : DEFAULT_MEDIA_MARKER;
  } catch {
    return DEFAULT_MEDIA_MARKER;
  }
}

/**
 * {@linkcode multimodalPrompt} with the marker of the llama-server at `url`.
 *
 * @example
 * ```ts
 * const prompt = await imagesPrompt(lease.url, "", "USER: [img-0]What is this?\nBOT:", [png]);
 * ```
 */
export async function imagesPrompt(
  url: string,
  prior: string,
  rendered: string,
  images: string[],
): Promise<{ prompt_string: string; multimodal_data: string[] }> {
  return multimodalPrompt(prior, rendered, images, await mediaMarker(url));
}

/**
 * llama-server's answer to images sent to a model it runs without a vision projector, said for the user; other
 * errors unchanged.
 *
 * @example
 * ```ts
 * throw imagesError(err, "llava:7b");
 * ```
 */
export function imagesError(err: unknown, name: string): unknown {
  if (
    err instanceof HttpError && /does not support multimodal|multimodal.*not supported/i.test(err.message)
  ) {
    return new HttpError(
      400,
      `"${name}" cannot read images: its llama-server runs without a vision projector (mmproj). Put the ` +
        `model's mmproj GGUF next to it (or pull the model again with its projector), then send the images again`,
    );
  }
  return err;
}
