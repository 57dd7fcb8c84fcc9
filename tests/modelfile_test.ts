/**
 * The Modelfile parser, table-driven with Ollama's grammar (cases in the spirit of ollama/ollama's
 * `parser/parser_test.go`), the request a Modelfile stands for, and the text written back.
 */
import { assertEquals, assertThrows } from "./_assert.ts";
import {
  formatModelfile,
  ModelfileError,
  modelfileRequest,
  parseModelfile,
} from "../lib/daemon/ollama/modelfile.ts";

const parses: { why: string; text: string; want: [string, string][] }[] = [
  {
    why: "commands are case-insensitive and a value runs to the end of its line",
    text: "from smollm2:135m\nSyStEm You are a pirate.\nparameter temperature 0.2\n",
    want: [["model", "smollm2:135m"], ["system", "You are a pirate."], ["temperature", "0.2"]],
  },
  {
    why: 'a """ value spans lines and keeps its inner quotes and blank lines',
    text: 'FROM x\nTEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}\n\nsaid "hi"{{ end }}"""\n',
    want: [["model", "x"], [
      "template",
      '{{ if .System }}<|im_start|>system\n{{ .System }}\n\nsaid "hi"{{ end }}',
    ]],
  },
  {
    why: 'a "quoted" value may span lines too',
    text: 'FROM x\nSYSTEM "line one\nline two"\n',
    want: [["model", "x"], ["system", "line one\nline two"]],
  },
  {
    why: "comments and blank lines are skipped; a file may lack the last newline",
    text: "# a comment\n\n  FROM x\n# another\nLICENSE MIT",
    want: [["model", "x"], ["license", "MIT"]],
  },
  {
    why: "PARAMETER stop repeats, MESSAGE keeps its role, values are trimmed",
    text: 'FROM x\nPARAMETER stop "<|im_end|>"\nPARAMETER stop <|end|>\nMESSAGE user   hi there  \n' +
      'MESSAGE assistant """Ahoy!"""\n',
    want: [
      ["model", "x"],
      ["stop", "<|im_end|>"],
      ["stop", "<|end|>"],
      ["message", "user: hi there"],
      ["message", "assistant: Ahoy!"],
    ],
  },
  {
    why: "a BOM, CRLF line ends and an ADAPTER path",
    text: "\uFEFFFROM ./m.gguf\r\nADAPTER ./lora.gguf\r\n",
    want: [["model", "./m.gguf"], ["adapter", "./lora.gguf"]],
  },
];

for (const c of parses) {
  Deno.test(`modelfile: ${c.why}`, () => {
    assertEquals(parseModelfile(c.text).map((x) => [x.name, x.args]), c.want);
  });
}

const errors: { why: string; text: string; message: string; line: number }[] = [
  {
    why: "an unknown command names its line",
    text: "FROM x\n\nTEMPERATURE 1\n",
    message: '(line 3): command must be one of "from"',
    line: 3,
  },
  {
    why: "a MESSAGE role other than system, user or assistant names its line",
    text: "FROM x\nMESSAGE tool hi\n",
    message: "(line 2): message role must be one of",
    line: 2,
  },
  {
    why: "an unterminated quote is an unexpected EOF",
    text: 'FROM x\nSYSTEM """open',
    message: "unexpected EOF",
    line: 0,
  },
  { why: "a file without FROM", text: "SYSTEM hi\n", message: "no FROM line", line: 0 },
  { why: "a command without a value", text: "FROM x\nSYSTEM", message: "unexpected EOF", line: 0 },
];

for (const c of errors) {
  Deno.test(`modelfile: ${c.why}`, () => {
    const err = assertThrows(() => parseModelfile(c.text), ModelfileError);
    assertEquals(err.message.startsWith(c.message), true, err.message);
    assertEquals(err.line, c.line);
  });
}

Deno.test("modelfile: the request types parameters as Ollama's options and collects stop into a list", () => {
  const warnings: string[] = [];
  const req = modelfileRequest(
    parseModelfile(
      "FROM ./smol.gguf\nADAPTER ./a.gguf\nPARAMETER temperature 0.5\nPARAMETER num_ctx 4096\n" +
        "PARAMETER stop a\nPARAMETER stop b\nPARAMETER use_mmap false\nPARAMETER mirostat 2\n" +
        "MESSAGE user hi\nLICENSE one\nLICENSE two\nSYSTEM s\nTEMPLATE t\n",
    ),
    { warn: (w) => warnings.push(w) },
  );
  assertEquals(req, {
    from: "./smol.gguf",
    adapters: ["./a.gguf"],
    parameters: { temperature: 0.5, num_ctx: 4096, stop: ["a", "b"], use_mmap: false },
    messages: [{ role: "user", content: "hi" }],
    license: ["one", "two"],
    system: "s",
    template: "t",
  });
  assertEquals(warnings, ["warning: parameter mirostat is deprecated"]);
});

Deno.test("modelfile: wrong parameter values and unknown parameters are errors worded as Ollama's", () => {
  const bad = (line: string) =>
    assertThrows(() => modelfileRequest(parseModelfile(`FROM x\n${line}\n`)), Error);
  assertEquals(bad("PARAMETER num_ctx lots").message, "invalid int value [lots]");
  assertEquals(bad("PARAMETER temperature hot").message, "invalid float value [hot]");
  assertEquals(bad("PARAMETER use_mmap maybe").message, "invalid bool value [maybe]");
  assertEquals(bad("PARAMETER colour blue").message, "unknown parameter 'colour'");
});

Deno.test("modelfile: the text written back parses to the same commands", () => {
  const commands = parseModelfile(
    'FROM x\nSYSTEM """say "hi"\nthen stop"""\nPARAMETER stop " end "\nMESSAGE user hello\nLICENSE MIT\n',
  );
  const text = formatModelfile(commands);
  assertEquals(
    text,
    'FROM x\nSYSTEM """say "hi"\nthen stop"""\nPARAMETER stop " end "\nMESSAGE user hello\nLICENSE MIT\n',
  );
  assertEquals(parseModelfile(text), commands);
});
