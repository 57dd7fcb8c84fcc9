/**
 * Thinking told from the response when the daemon runs a Go template itself: the tags inferred from a
 * template, and the parser that splits an answer given piece by piece. The cases and the answers expected are
 * those of ollama/ollama's thinking/template_test.go and thinking/parser_test.go (MIT), so that the split is
 * the one an Ollama user gets.
 */
import { assertEquals } from "./_assert.ts";
import { inferThinkingTags, ThinkingEventParser, ThinkingParser } from "../lib/daemon/ollama/thinking.ts";
import { CompletionEventParser, type GenEvent } from "../lib/daemon/ollama/events.ts";

const THINK = { open: "<think>", close: "</think>" };

Deno.test("thinking tags are inferred from a template as Ollama infers them", () => {
  const basic = `
			{{ if .Thinking}}
				/think
			{{ end }}
			{{- range $i, $_ := .Messages }}
				{{- $last := eq (len (slice $.Messages $i)) 1 -}}
				{{ if and $last .Thinking }}
					<think>{{ .Thinking }}</think>
				{{ end }}
			{{ end }}
		`;
  assertEquals(inferThinkingTags(basic), THINK);
  // The nearest range goes over something else.
  const nested = `
			{{- range $i, $_ := .Messages }}
				{{- range $j, $_ := .NotMessages }}
					{{ if .Thinking }}
						<think>{{ .Thinking }}</think>
					{{ end }}
				{{ end }}
			{{ end }}
		`;
  assertEquals(inferThinkingTags(nested), undefined);
  const spaced = `
			{{- range $i, $_ := .Messages }}
				{{ if .Thinking }}
					Some text before   {{ .Thinking }}    Some text after
				{{ end }}
			{{ end }}
		`;
  assertEquals(inferThinkingTags(spaced), { open: "Some text before", close: "Some text after" });
  const qwen3 = `
{{- if or .System .Tools .Thinking }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Thinking }}
/think
{{- else }}
/no_think
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if and $last .Thinking }}
<think>{{ .Thinking }}</think>
{{ end }}
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
			`;
  assertEquals(inferThinkingTags(qwen3), THINK);
  // No .Thinking at all, or a template that does not parse.
  assertEquals(inferThinkingTags("{{ range .Messages }}{{ .Content }}{{ end }}"), undefined);
  assertEquals(inferThinkingTags("{{ if .Prompt }}"), undefined);
});

/** Each step: the piece given, the thinking and the response it makes certain. */
function steps(cases: [string, string, string][]): void {
  const p = new ThinkingParser(THINK);
  cases.forEach(([input, thinking, response], i) => {
    assertEquals(p.add(input), { thinking, response }, `step ${i}: ${JSON.stringify(input)}`);
  });
}

Deno.test("the parser splits an answer as Ollama's thinking parser does", () => {
  assertEquals(new ThinkingParser(THINK).add("<think> internal </think> world"), {
    thinking: "internal ",
    response: "world",
  });
  assertEquals(new ThinkingParser(THINK).add("<think>a</think><think>b</think>c"), {
    thinking: "a",
    response: "<think>b</think>c",
  });
  // No opening tag first: all of it is response, white space and later tags included.
  steps([["  abc", "", "  abc"], ["def", "", "def"]]);
  steps([["  abc <think>def</think> ghi", "", "  abc <think>def</think> ghi"]]);
  // A tag built up piece by piece is held until it is certain.
  steps([["  <th", "", ""], ["in", "", ""], ["k>a", "a", ""]]);
  steps([["<think>abc</th", "abc", ""], ["ink>def", "", "def"]]);
  steps([["<think>abc</th", "abc", ""], ["ing>def", "</thing>def", ""], ["ghi</thi", "ghi", ""], [
    "nk>jkl",
    "",
    "jkl",
  ]]);
  // White space after either tag is dropped, not inside the response.
  steps([["  <think>abc</think>", "abc", ""], ["\n\ndef", "", "def"]]);
  steps([["  <think>abc</think>\n\ndef ", "abc", "def "], [" ghi", "", " ghi"]]);
  steps([["<think>", "", ""], ["\n", "", ""], ["</think>", "", ""], ["\n\n", "", ""], ["Hi", "", "Hi"], [
    " there",
    "",
    " there",
  ]]);
  steps([["  <think>   \t ", "", ""], ["  these are some ", "these are some ", ""], [
    "thoughts </think>  ",
    "thoughts ",
    "",
  ], ["  more content", "", "more content"]]);
});

/** llama-server's `/completion` events for these pieces of text, then the last one. */
function sse(pieces: string[]): Uint8Array {
  const lines = pieces.map((content) =>
    `data: ${JSON.stringify({ index: 0, content, tokens: [1], stop: false, id_slot: 0 })}\n\n`
  );
  lines.push(`data: ${JSON.stringify({ index: 0, content: "", stop: true, stop_type: "eos" })}\n\n`);
  return new TextEncoder().encode(lines.join(""));
}

function collect(events: GenEvent[]): { thinking: string; response: string; last: string } {
  let thinking = "", response = "";
  for (const ev of events) {
    if (ev.kind === "thinking") thinking += ev.text;
    if (ev.kind === "text") response += ev.text;
  }
  return { thinking, response, last: events[events.length - 1].kind };
}

Deno.test("over llama-server's events: an answer started inside the thinking, and ones cut off in a tag", () => {
  const p = new ThinkingEventParser(new CompletionEventParser(), THINK, true);
  const pieces = [" Two", " and two", " make four.</", "think", ">\n", "Four", "."];
  const got = collect([...p.push(sse(pieces)), ...p.end()]);
  assertEquals(got, { thinking: "Two and two make four.", response: "Four.", last: "done" });
  assertEquals(p.raw, pieces.join(""));
  // The answer ends (length limit) in what may be the start of the closing tag: as Ollama, that is dropped.
  const cut = new ThinkingEventParser(new CompletionEventParser(), THINK, true);
  assertEquals(collect([...cut.push(sse(["Hmm </th"])), ...cut.end()]), {
    thinking: "Hmm ",
    response: "",
    last: "done",
  });
  assertEquals(cut.raw, "Hmm </th");
  // An answer that never got past white space or a part of the opening tag: nothing, as Ollama.
  const opening = new ThinkingEventParser(new CompletionEventParser(), THINK, false);
  assertEquals(collect([...opening.push(sse(["\n", "<thi"])), ...opening.end()]), {
    thinking: "",
    response: "",
    last: "done",
  });
});
