/**
 * Ollama's Go chat templates translated to Jinja, checked by rendering: each translated template is given to a
 * real llama-server (`--chat-template-file`), whose `/apply-template` renders it for a few conversations; the
 * expected text is what Go's text/template makes of the same messages under Ollama's `template.Execute`
 * (written by hand: consecutive messages of a role merged, the system messages joined, the legacy form run a
 * turn at a time). The templates under tests/templates are ollama/ollama's `template/*.gotmpl` (MIT), and
 * `mistral-tools.gotmpl` its `server/testdata/tools/mistral.gotmpl`, whose expected text with tools and tool calls
 * is its `mistral.out` (JSON as Go's encoder writes it: compact, `<`, `>`, `&` escaped).
 */
import { assertEquals, assertStringIncludes, assertThrows } from "./_assert.ts";
import { smolModelPath, testInstance } from "./_fixtures.ts";
import { goTemplateToJinja, TemplateError } from "../lib/daemon/ollama/template.ts";

type Msg = { role: string; content: string; tool_calls?: unknown[]; tool_call_id?: string };
/** A conversation: its messages, or messages with the tools offered. */
type Conversation = Msg[] | { messages: Msg[]; tools: unknown[] };
const sys = (content: string): Msg => ({ role: "system", content });
const user = (content: string): Msg => ({ role: "user", content });
const bot = (content: string): Msg => ({ role: "assistant", content });

/** Renders the Jinja with llama-server for each conversation (one server for all). */
async function render(jinja: string, conversations: Conversation[]): Promise<string[]> {
  const { instance } = await testInstance();
  const dir = await Deno.makeTempDir({ prefix: "llama-mgr-template-" });
  const file = `${dir}/t.jinja`;
  await Deno.writeTextFile(file, jinja);
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const child = new Deno.Command(`${instance.binDir}/llama-server`, {
    args: [
      "-m",
      await smolModelPath(),
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "-c",
      "512",
      "-np",
      "1",
    ]
      .concat(["--jinja", "--chat-template-file", file]),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = new Response(child.stderr).text();
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0;; i++) {
      const ok = await fetch(`${base}/health`).then((r) => (r.body?.cancel(), r.ok), () => false);
      if (ok) break;
      const exited = await Promise.race([
        child.status.then(() => true),
        new Promise((r) => setTimeout(r, 200)),
      ]);
      if (exited || i > 150) throw new Error(`llama-server did not start:\n${(await log).slice(-2000)}`);
    }
    const out: string[] = [];
    for (const messages of conversations) {
      const body = Array.isArray(messages) ? { messages } : messages;
      const r = await fetch(`${base}/apply-template`, { method: "POST", body: JSON.stringify(body) });
      const got = await r.json();
      if (!r.ok) throw new Error(`apply-template: ${JSON.stringify(got)}`);
      out.push(got.prompt);
    }
    return out;
  } finally {
    try {
      child.kill();
    } catch { /* exited */ }
    await child.status;
    await log;
    await Deno.remove(dir, { recursive: true });
  }
}

const library = (name: string) => Deno.readTextFile(new URL(`./templates/${name}.gotmpl`, import.meta.url));

/** Ollama's tools test data (server/testdata/tools): a weather tool, in the field order Go writes. */
const WEATHER = [{
  type: "function",
  function: {
    name: "get_current_weather",
    description: "Get the current weather",
    parameters: {
      type: "object",
      required: ["location", "format"],
      properties: {
        format: {
          type: "string",
          description: "The temperature unit to use. Infer this from the user's location.",
          enum: ["celsius", "fahrenheit"],
        },
        location: { type: "string", description: "The city and state, e.g. San Francisco, CA" },
      },
    },
  },
}];
/** A tool call as the daemon passes it to llama-server (arguments as a JSON string, OpenAI's form). */
const call = (name: string, args: Record<string, unknown>) => ({
  id: "89a1e453-0bce-4de3-a456-c54bed09c520",
  type: "function",
  function: { name, arguments: JSON.stringify(args) },
});

const cases: { name: string; template: () => Promise<string>; conversations: [Conversation, string][] }[] = [
  {
    name: "chatml",
    template: () => library("chatml"),
    conversations: [
      [
        [sys("S"), user("Hi")],
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
      ],
      [
        [user("a"), user("b"), bot("c"), user("d")],
        "<|im_start|>user\na\n\nb<|im_end|>\n<|im_start|>assistant\nc<|im_end|>\n<|im_start|>user\nd<|im_end|>\n" +
        "<|im_start|>assistant\n",
      ],
    ],
  },
  {
    name: "llama3-instruct",
    template: () => library("llama3-instruct"),
    conversations: [
      [
        [sys("S"), user("Hi")],
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi" +
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
      ],
      [
        [user("a"), bot("b"), user("c")],
        "<|start_header_id|>user<|end_header_id|>\n\na<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nb" +
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nc<|eot_id|><|start_header_id|>assistant" +
        "<|end_header_id|>\n\n",
      ],
    ],
  },
  {
    name: "mistral-instruct",
    template: () => library("mistral-instruct"),
    conversations: [
      [[sys("S"), user("Hi")], "[INST] S\n\nHi[/INST]"],
      [[user("a"), user("b"), bot("c"), user("d")], "[INST] a\n\nb[/INST] c</s>[INST] d[/INST]"],
    ],
  },
  {
    name: "gemma-instruct ($system, printf, continue)",
    template: () => library("gemma-instruct"),
    conversations: [
      [[sys("S"), user("Hi")], "<start_of_turn>user\nS\nHi<end_of_turn>\n<start_of_turn>model\n"],
      [
        [user("a"), bot("b"), user("c")],
        "<start_of_turn>user\na<end_of_turn>\n<start_of_turn>model\nb<end_of_turn>\n<start_of_turn>user\nc" +
        "<end_of_turn>\n<start_of_turn>model\n",
      ],
      [
        [sys("A"), bot("x"), sys("B"), user("u")],
        "<start_of_turn>model\nx<end_of_turn>\n<start_of_turn>user\nA\n\nB\nu<end_of_turn>\n<start_of_turn>model\n",
      ],
    ],
  },
  {
    name: "phi-3",
    template: () => library("phi-3"),
    conversations: [
      [[sys("S"), user("Hi")], "<|system|>\nS<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"],
      [
        [user("a"), bot("b"), user("c")],
        "<|user|>\na<|end|>\n<|assistant|>\nb<|end|>\n<|user|>\nc<|end|>\n<|assistant|>\n",
      ],
    ],
  },
  {
    name: "the legacy form (.System, .Prompt, .Response), run a turn at a time",
    template: () =>
      Promise.resolve(
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}" +
          "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}" +
          "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>",
      ),
    conversations: [
      [
        [sys("S"), user("a"), bot("b"), user("c")],
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\na" +
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nb<|eot_id|>" +
        "<|start_header_id|>user<|end_header_id|>\n\nc<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
      ],
      [
        [user("Hi")],
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
      ],
    ],
  },
  {
    name: "a legacy template without .Response gets one appended (as Ollama's Parse does)",
    template: () => Promise.resolve("{{ if .System }}[{{ .System }}] {{ end }}Q: {{ .Prompt }}\nA: "),
    conversations: [
      [[sys("S"), user("a"), bot("b"), user("c")], "[S] Q: a\nA: bQ: c\nA: "],
    ],
  },
];

cases.push({
  name: "Ollama's mistral tools template (.Tools, .ToolCalls, arguments, JSON as Go writes it)",
  template: () => library("mistral-tools"),
  conversations: [
    [
      {
        messages: [
          sys("You are a knowledgeable assistant. You can answer questions and perform tasks."),
          user("What's the weather like today in Paris?"),
          {
            role: "assistant",
            content: "",
            tool_calls: [call("get_current_weather", { format: "celsius", location: "Paris, France" })],
          },
          { role: "tool", tool_call_id: "89a1e453-0bce-4de3-a456-c54bed09c520", content: "22" },
          bot("The current temperature in Paris, France is 22 degrees Celsius."),
          user("What's the weather like today in San Francisco and Toronto?"),
        ],
        tools: WEATHER,
      },
      // server/testdata/tools/mistral.out, character for character.
      '[INST] What\'s the weather like today in Paris?[/INST][TOOL_CALLS] [{"name": "get_current_weather", ' +
      '"arguments": {"format":"celsius","location":"Paris, France"}}]</s>[TOOL_RESULTS] {"content": 22}' +
      "[/TOOL_RESULTS] The current temperature in Paris, France is 22 degrees Celsius.</s>[AVAILABLE_TOOLS] " +
      '[{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather",' +
      '"parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string",' +
      '"description":"The temperature unit to use. Infer this from the user\'s location.","enum":["celsius",' +
      '"fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}}]' +
      "[/AVAILABLE_TOOLS][INST] You are a knowledgeable assistant. You can answer questions and perform tasks.\n\n" +
      "What's the weather like today in San Francisco and Toronto?[/INST]",
    ],
    [
      {
        messages: [
          user("Find <b> & </b>"),
          {
            role: "assistant",
            content: "",
            tool_calls: [call("find", { q: "<b> & </b>", n: [1, 2.5, true, null] })],
          },
          { role: "tool", content: "0" },
          user("Thanks"),
        ],
        tools: [{
          type: "function",
          function: {
            name: "find",
            description: "Search <html> & text",
            parameters: { type: "object", properties: {} },
          },
        }],
      },
      // Go's json.Marshal escapes <, > and & inside strings.
      '[INST] Find <b> & </b>[/INST][TOOL_CALLS] [{"name": "find", "arguments": {"q":"\\u003cb\\u003e \\u0026 ' +
      '\\u003c/b\\u003e","n":[1,2.5,true,null]}}]</s>[TOOL_RESULTS] {"content": 0}[/TOOL_RESULTS]' +
      '[AVAILABLE_TOOLS] [{"type":"function","function":{"name":"find","description":"Search \\u003chtml\\u003e ' +
      '\\u0026 text","parameters":{"type":"object","properties":{}}}}][/AVAILABLE_TOOLS][INST] Thanks[/INST]',
    ],
  ],
});
cases.push({
  name: "json of .Tools and of a tool call's arguments",
  template: () =>
    Promise.resolve(
      "<tools>{{ json .Tools }}</tools>{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ range .ToolCalls }}" +
        '<call>{"name":"{{ .Function.Name }}","arguments":{{ json .Function.Arguments }}}</call>{{ end }}' +
        "</{{ .Role }}>{{ end }}",
    ),
  conversations: [
    [
      {
        messages: [
          user("a"),
          { role: "assistant", content: "", tool_calls: [call("f", { x: "1, 2: 3" })] },
          { role: "tool", content: "r" },
          user("b"),
        ],
        tools: [{
          type: "function",
          function: { name: "f", description: "d", parameters: { type: "object", properties: {} } },
        }],
      },
      '<tools>[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{}}}}]</tools>' +
      '<user>a</user><assistant><call>{"name":"f","arguments":{"x":"1, 2: 3"}}</call></assistant><tool>r</tool>' +
      "<user>b</user>",
    ],
  ],
});

for (const c of cases) {
  Deno.test(`template: ${c.name} renders in llama-server as Go renders it`, async () => {
    const jinja = goTemplateToJinja(await c.template());
    const got = await render(jinja, c.conversations.map(([m]) => m));
    for (let i = 0; i < got.length; i++) assertEquals(got[i], c.conversations[i][1], `conversation ${i + 1}`);
  });
}

Deno.test("template: a construct without a translation is an error that names it", () => {
  const bad: [string, string][] = [
    ['{{ template "x" . }}', "template"],
    ["{{ with .System }}{{ . }}{{ end }}", "with"],
    ["{{ currentDate }}", '"currentDate"'],
    ["{{ .Messages.Foo }}", ".Foo"],
    ["{{ range .Messages }}{{ .Images }}{{ end }}", ".Images"],
    ['{{ printf "%q" .System }}', "%q"],
    ["{{ if .System }}open", "{{ end }}"],
  ];
  for (const [t, construct] of bad) {
    const err = assertThrows(() => goTemplateToJinja(t), TemplateError);
    assertStringIncludes(err.message, construct, t);
  }
});
