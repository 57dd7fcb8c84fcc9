/**
 * Anthropic's `/v1/messages` and OpenAI's `/v1/responses` bodies as the OpenAI chat body llama-server turns
 * them into before it applies the chat template (its `server_chat_convert_anthropic_to_oai` and
 * `server_chat_convert_responses_to_chatcmpl`). The KV cache store needs the prompt's tokens to find a saved
 * conversation that a request continues; llama-server's `/apply-template` takes only the chat form. Only what
 * shapes the prompt is converted (system prompt, messages, tool calls and results, tools); a body this cannot
 * read gives undefined, and the request then runs as if nothing had been saved.
 *
 * @module
 */

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** llama-server blanks the per-request `cch=` stamp of Claude Code's billing header, so the prefix holds. */
function normalizeBillingHeader(text: string): string {
  const head = "x-anthropic-billing-header:";
  if (!text.startsWith(head)) return text;
  const at = text.indexOf("cch=", head.length);
  if (at < 0) return text;
  const from = at + 4;
  if (from + 5 < text.length && text[from + 5] === ";") {
    return text.slice(0, from) + "fffff" + text.slice(from + 5);
  }
  return text;
}

function anthropicImage(block: Json): Json | undefined {
  const source = isObject(block.source) ? block.source : {};
  if (source.type === "base64") {
    const media = typeof source.media_type === "string" ? source.media_type : "image/jpeg";
    return { type: "image_url", image_url: { url: `data:${media};base64,${str(source.data)}` } };
  }
  if (source.type === "url") return { type: "image_url", image_url: { url: str(source.url) } };
  return undefined;
}

/**
 * The chat body llama-server makes of an Anthropic Messages request (the fields that shape the prompt).
 *
 * @example
 * ```ts
 * const chat = anthropicToChat({ system: "Be brief.", messages: [{ role: "user", content: "Hi" }] });
 * // { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }] }
 * ```
 */
export function anthropicToChat(body: Json): Json | undefined {
  const messages: unknown[] = [];
  const system = body.system;
  if (system !== undefined && system !== null) {
    let content = "";
    if (typeof system === "string") content = normalizeBillingHeader(system);
    else if (Array.isArray(system)) {
      for (const b of system) {
        if (isObject(b) && b.type === "text") content += normalizeBillingHeader(str(b.text));
      }
    }
    messages.push({ role: "system", content });
  }
  if (!Array.isArray(body.messages)) return undefined;
  for (const msg of body.messages) {
    if (!isObject(msg)) return undefined;
    const role = str(msg.role);
    if (!("content" in msg)) {
      if (role !== "assistant") messages.push(msg);
      continue;
    }
    if (!Array.isArray(msg.content)) {
      messages.push(msg);
      continue;
    }
    const content: unknown[] = [];
    const toolCalls: unknown[] = [];
    const toolResults: unknown[] = [];
    let reasoning = "";
    for (const block of msg.content) {
      if (!isObject(block)) continue;
      if (block.type === "text") content.push(block);
      else if (block.type === "thinking") reasoning += str(block.thinking);
      else if (block.type === "image") {
        const image = anthropicImage(block);
        if (image) content.push(image);
      } else if (block.type === "tool_use") {
        toolCalls.push({
          id: str(block.id),
          type: "function",
          // llama.cpp's JSON keeps keys in the order parsed and dumps without spaces, as JSON.stringify.
          function: {
            name: str(block.name),
            arguments: JSON.stringify(isObject(block.input) ? block.input : {}),
          },
        });
      } else if (block.type === "tool_result") {
        const id = str(block.tool_use_id);
        const result = block.content;
        if (typeof result === "string") toolResults.push({ role: "tool", tool_call_id: id, content: result });
        else if (Array.isArray(result)) {
          let text = "";
          const parts: unknown[] = [];
          let images = false;
          for (const c of result) {
            if (!isObject(c)) continue;
            if (c.type === "text") {
              text += str(c.text);
              parts.push({ type: "text", text: str(c.text) });
            } else if (c.type === "image") {
              images = true;
              const image = anthropicImage(c);
              if (image) parts.push(image);
            }
          }
          toolResults.push({ role: "tool", tool_call_id: id, content: images ? parts : text });
        } else toolResults.push({ role: "tool", tool_call_id: id, content: "" });
      }
    }
    if (content.length || toolCalls.length || reasoning) {
      const out: Json = { role };
      if (content.length) out.content = content;
      else out.content = "";
      if (toolCalls.length) out.tool_calls = toolCalls;
      if (reasoning) out.reasoning_content = reasoning;
      messages.push(out);
    }
    messages.push(...toolResults);
  }
  const chat: Json = { messages };
  if (Array.isArray(body.tools)) {
    chat.tools = body.tools.filter(isObject).map((t) => ({
      type: "function",
      function: {
        name: str(t.name),
        description: str(t.description),
        parameters: "input_schema" in t ? t.input_schema : {},
      },
    }));
  }
  if (isObject(body.tool_choice)) {
    const type = body.tool_choice.type;
    if (type === "auto") chat.tool_choice = "auto";
    else if (type === "any" || type === "tool") chat.tool_choice = "required";
  }
  if ("chat_template_kwargs" in body) chat.chat_template_kwargs = body.chat_template_kwargs;
  return chat;
}

/**
 * The chat body llama-server makes of an OpenAI Responses request (the fields that shape the prompt);
 * undefined for what it refuses (`previous_response_id`, unknown items).
 *
 * @example
 * ```ts
 * const chat = responsesToChat({ instructions: "Be brief.", input: "Hi" });
 * // { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }] }
 * ```
 */
export function responsesToChat(body: Json): Json | undefined {
  if (!("input" in body) || str(body.previous_response_id)) return undefined;
  const messages: Json[] = [];
  if ("instructions" in body) messages.push({ role: "system", content: str(body.instructions) });
  const input = body.input;
  if (typeof input === "string") messages.push({ role: "user", content: input });
  else if (Array.isArray(input)) {
    for (const raw of input) {
      if (!isObject(raw)) return undefined;
      const item: Json = { ...raw };
      const last = messages[messages.length - 1];
      const mergePrev = last?.role === "assistant";
      if (typeof item.content === "string") item.content = [{ text: item.content, type: "input_text" }];
      if (Array.isArray(item.content) && ["user", "system", "developer"].includes(str(item.role))) {
        const content: unknown[] = [];
        for (const part of item.content) {
          if (!isObject(part)) return undefined;
          if (part.type === "input_text" && "text" in part) content.push({ text: part.text, type: "text" });
          else if (part.type === "input_image" && "image_url" in part) {
            content.push({ image_url: { url: part.image_url }, type: "image_url" });
          } else return undefined;
        }
        delete item.type;
        delete item.status;
        messages.push({ ...item, content });
      } else if (item.role === "assistant" && item.type === "message") {
        const content: unknown[] = [];
        for (const part of Array.isArray(item.content) ? item.content : []) {
          if (!isObject(part)) return undefined;
          if ((part.type === "output_text" || part.type === "input_text") && typeof part.text === "string") {
            content.push({ text: part.text, type: "text" });
          } else if (part.type === "refusal" && typeof part.refusal === "string") {
            content.push({ refusal: part.refusal, type: "refusal" });
          } else return undefined;
        }
        if (mergePrev) {
          if (!Array.isArray(last.content)) last.content = [];
          (last.content as unknown[]).push(...content);
        } else {
          delete item.status;
          delete item.type;
          messages.push({ ...item, content });
        }
      } else if (
        item.type === "function_call" && typeof item.arguments === "string" &&
        typeof item.call_id === "string" &&
        typeof item.name === "string"
      ) {
        const call = {
          function: { arguments: item.arguments, name: item.name },
          id: item.call_id,
          type: "function",
        };
        if (mergePrev) {
          if (!Array.isArray(last.tool_calls)) last.tool_calls = [];
          (last.tool_calls as unknown[]).push(call);
        } else messages.push({ role: "assistant", tool_calls: [call] });
      } else if (
        item.type === "function_call_output" && typeof item.call_id === "string" &&
        (typeof item.output === "string" || Array.isArray(item.output))
      ) {
        let content: unknown = item.output;
        if (Array.isArray(item.output)) {
          content = item.output.map((o) => {
            if (!isObject(o)) return o;
            if (o.type === "input_text") return { ...o, type: "text" };
            if (o.type === "input_image") return { ...o, type: "image_url", image_url: { url: o.image_url } };
            return o;
          });
        }
        messages.push({ content, role: "tool", tool_call_id: item.call_id });
      } else if (item.type === "reasoning" && Array.isArray(item.summary) && Array.isArray(item.content)) {
        const text = isObject(item.content[0]) ? item.content[0].text : undefined;
        if (typeof text !== "string") return undefined;
        if (mergePrev) last.reasoning_content = text;
        else messages.push({ role: "assistant", content: [], reasoning_content: text });
      } else return undefined;
    }
  } else return undefined;
  const chat: Json = { messages };
  if (Array.isArray(body.tools)) {
    const tools = body.tools.filter((t) => isObject(t) && t.type === "function").map((t) => {
      const { type: _type, ...fn } = t as Json;
      return { type: "function", function: { strict: true, ...fn } };
    });
    if (tools.length) chat.tools = tools;
  }
  for (const key of ["tool_choice", "chat_template_kwargs", "parallel_tool_calls"]) {
    if (key in body) chat[key] = body[key];
  }
  if (isObject(body.reasoning) && "effort" in body.reasoning) chat.reasoning_effort = body.reasoning.effort;
  return chat;
}
