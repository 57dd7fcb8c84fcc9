/**
 * Ollama Go templates run here (what `/api/generate` does with a request's `template`): the texts expected
 * are what Go's text/template makes of the same values under Ollama's `template.Execute` (written by hand, as
 * in template_test.ts: consecutive messages of a role merged, the system messages joined, the legacy form
 * run a turn at a time and cut after the last `.Response`). The library templates are ollama/ollama's
 * `template/*.gotmpl` (MIT), under tests/templates.
 */
import { assertEquals, assertThrows } from "./_assert.ts";
import { renderGoTemplate } from "../lib/daemon/ollama/template_exec.ts";
import { TemplateError } from "../lib/daemon/ollama/template.ts";

const library = (name: string) =>
  Deno.readTextFileSync(new URL(`./templates/${name}.gotmpl`, import.meta.url).pathname);
const sys = (content: string) => ({ role: "system", content });
const user = (content: string) => ({ role: "user", content });
const bot = (content: string) => ({ role: "assistant", content });

Deno.test("library templates with .Messages render as Go renders them", () => {
  assertEquals(
    renderGoTemplate(library("chatml"), { messages: [user("a"), user("b"), bot("c"), user("d")] }),
    "<|im_start|>user\na\n\nb<|im_end|>\n<|im_start|>assistant\nc<|im_end|>\n<|im_start|>user\nd<|im_end|>\n" +
      "<|im_start|>assistant\n",
  );
  assertEquals(
    renderGoTemplate(library("mistral-instruct"), { messages: [sys("S"), user("Hi")] }),
    "[INST] S\n\nHi[/INST]",
  );
  assertEquals(
    renderGoTemplate(library("gemma-instruct"), { messages: [sys("A"), bot("x"), sys("B"), user("u")] }),
    "<start_of_turn>model\nx<end_of_turn>\n<start_of_turn>user\nA\n\nB\nu<end_of_turn>\n<start_of_turn>model\n",
  );
  assertEquals(
    renderGoTemplate(library("phi-3"), { messages: [sys("S"), user("Hi")] }),
    "<|system|>\nS<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n",
  );
});

Deno.test("the legacy form runs a turn at a time and stops after the last .Response", () => {
  const t = "{{ if .System }}<|sys|>{{ .System }}{{ end }}{{ if .Prompt }}<|user|>{{ .Prompt }}{{ end }}" +
    "<|bot|>{{ .Response }}<|end|>";
  assertEquals(
    renderGoTemplate(t, { messages: [sys("S"), user("a"), bot("b"), user("c")] }),
    "<|sys|>S<|user|>a<|bot|>b<|end|><|user|>c<|bot|>",
  );
  // Without .Response Ollama's Parse appends one.
  assertEquals(
    renderGoTemplate("{{ if .System }}[{{ .System }}] {{ end }}Q: {{ .Prompt }}\nA: ", {
      messages: [sys("S"), user("a"), bot("b"), user("c")],
    }),
    "[S] Q: a\nA: bQ: c\nA: ",
  );
});

Deno.test("a suffix gives .Prompt and .Suffix (fill in the middle)", () => {
  const t = "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{- else }}{{ .Prompt }}{{- end }}";
  assertEquals(
    renderGoTemplate(t, { messages: [user("def f(")], prompt: "def f(", suffix: "return 1" }),
    "<PRE> def f( <SUF>return 1 <MID>",
  );
  assertEquals(renderGoTemplate(t, { messages: [user("def f(")], prompt: "def f(" }), "def f(");
});

Deno.test("variables, index, slice, len, printf, and/or, range with $i, break", () => {
  const u =
    "{{- $n := len .Messages }}{{ range $i, $m := .Messages }}{{ if eq (len (slice $.Messages $i)) 1 }}" +
    '{{ printf "last %d/%d: %s" $i $n $m.Content }}{{ break }}{{ else if and $m.Content (ne $m.Role "x") }}' +
    '{{ $m.Role }}={{ .Content }};{{ end }}{{ end }}{{ $first := index .Messages 0 }}{{ $first.Role }} {{ or .System "none" }}';
  assertEquals(
    renderGoTemplate(u, { messages: [user("a"), bot("b"), user("c")] }),
    "user=a;assistant=b;last 2/3: cuser none",
  );
  // A variable set inside a loop keeps its value after it, as Go's `=` does.
  const v = '{{- $seen := "" }}{{ range .Messages }}{{ $seen = .Role }}{{ end }}{{ $seen }}';
  assertEquals(renderGoTemplate(v, { messages: [user("a"), bot("b")] }), "assistant");
  assertEquals(
    renderGoTemplate("{{ .Think }} {{ .ThinkLevel }}|{{ .Prompt }}", {
      messages: [user("q")],
      think: true,
    }),
    "true medium|q",
  );
  assertEquals(
    renderGoTemplate("{{ json .Prompt }}", { messages: [user("<a & b>")] }),
    '"\\u003ca \\u0026 b\\u003e"',
  );
});

Deno.test("a construct that cannot be used is an error naming it", () => {
  const cases: [string, string][] = [
    ['{{ template "x" . }}', "{{ template }} is not supported"],
    ["{{ with .System }}{{ . }}{{ end }}{{ .Prompt }}", "{{ with }} is not supported"],
    ["{{ .Prompt | html }}", 'the function "html"'],
    ["{{- $last := sub 1 }}{{ .Prompt }}", 'the function "sub" (in {{ $last := sub 1 }}) is not supported'],
    ["{{ .Nope }}{{ .Prompt }}", ".Nope is not a value Ollama gives a template"],
    ["{{ range .Messages }}{{ .Colour }}{{ end }}", "can't evaluate field Colour"],
    ["{{ if .Prompt }}", "has no {{ end }}"],
    ['{{ printf "%5.2f" 1.5 }}{{ .Prompt }}', 'printf "%5.2f" is not supported'],
  ];
  for (const [t, msg] of cases) {
    assertThrows(() => renderGoTemplate(t, { messages: [user("a")] }), TemplateError, msg);
  }
});
