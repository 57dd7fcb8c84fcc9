/** The daemon as a service: the unit and plist text, systemd's own verdict on it, install and uninstall. */
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { cli, tempDir } from "./_fixtures.ts";
import {
  launchdPlist,
  serviceEnv,
  serviceLocation,
  type ServiceSpec,
  systemdUnit,
} from "../lib/daemon/service.ts";
import { exists } from "../lib/util/fs.ts";
import { run, which } from "../lib/util/run.ts";

Deno.test("the unit and the plist carry the command line, environment and restart policy", async (t) => {
  const cases: { what: string; spec: ServiceSpec; unit: string[]; notUnit: string[]; plist: string[] }[] = [
    {
      what: "a user service",
      spec: {
        argv: ["/opt/llama-mgr", "-d", "/data", "daemon"],
        env: { OLLAMA_HOST: "0.0.0.0:11500" },
        user: true,
      },
      unit: [
        "ExecStart=/opt/llama-mgr -d /data daemon",
        "Environment=OLLAMA_HOST=0.0.0.0:11500",
        "Restart=on-failure",
        "StandardOutput=journal",
        "WantedBy=default.target",
      ],
      notUnit: ["User=", "network-online"],
      plist: ["<string>/opt/llama-mgr</string>", "<key>OLLAMA_HOST</key>", "<string>0.0.0.0:11500</string>"],
    },
    {
      what: "a system service run as a user",
      spec: { argv: ["/opt/llama-mgr", "daemon"], env: {}, user: false, runAs: "me" },
      unit: ["User=me", "WantedBy=multi-user.target", "After=network-online.target"],
      notUnit: ["Environment="],
      plist: ["<key>UserName</key>", "<string>me</string>"],
    },
    {
      what: "awkward characters, quoted for each format",
      spec: {
        argv: ["/home/a b/deno", "run", "/x/100%/main.ts", 'say "$HOME"'],
        env: { OLLAMA_ORIGINS: "a b,<c>&d" },
        user: true,
        logFile: "/logs/daemon.log",
      },
      unit: [
        'ExecStart="/home/a b/deno" run /x/100%%/main.ts "say \\"$$HOME\\""',
        'Environment="OLLAMA_ORIGINS=a b,<c>&d"',
      ],
      notUnit: [],
      plist: [
        "<string>/home/a b/deno</string>",
        "<string>a b,&lt;c&gt;&amp;d</string>",
        "<string>/logs/daemon.log</string>",
      ],
    },
  ];
  for (const c of cases) {
    await t.step(c.what, () => {
      const unit = systemdUnit(c.spec);
      for (const line of c.unit) assert(unit.split("\n").includes(line), `missing '${line}' in\n${unit}`);
      for (const part of c.notUnit) assert(!unit.includes(part), `unexpected '${part}' in\n${unit}`);
      const plist = launchdPlist(c.spec);
      for (const part of c.plist) assertStringIncludes(plist, part);
      assertStringIncludes(plist, "<key>SuccessfulExit</key>\n    <false/>");
    });
  }
  await t.step("the files go where systemd and launchd look", () => {
    const env = { HOME: "/home/me" };
    assertEquals(
      serviceLocation({ os: "linux", user: true, env }).path,
      "/home/me/.config/systemd/user/llama-mgr.service",
    );
    assertEquals(
      serviceLocation({ os: "linux", user: true, env: { ...env, XDG_CONFIG_HOME: "/cfg" } }).path,
      "/cfg/systemd/user/llama-mgr.service",
    );
    assertEquals(
      serviceLocation({ os: "linux", user: false, env }).path,
      "/etc/systemd/system/llama-mgr.service",
    );
    assertEquals(
      serviceLocation({ os: "darwin", user: true, env }).path,
      "/home/me/Library/LaunchAgents/com.llama-mgr.daemon.plist",
    );
    assertEquals(
      serviceLocation({ os: "darwin", user: false, env }).path,
      "/Library/LaunchDaemons/com.llama-mgr.daemon.plist",
    );
    assertEquals(serviceEnv({ OLLAMA_HOST: "h", PATH: "/bin", OLLAMA_MODELS: "/m" }), {
      OLLAMA_HOST: "h",
      OLLAMA_MODELS: "/m",
    });
  });
});

Deno.test("systemd-analyze verify accepts the written unit", async () => {
  const tool = which("systemd-analyze");
  if (!tool) {
    // .ci/run installs it; elsewhere say so rather than pass.
    console.log("systemd-analyze not found (Debian's systemd package): the unit was NOT verified");
    return;
  }
  const d = await tempDir();
  try {
    for (const user of [true, false]) {
      const path = `${d.path}/llama-mgr.service`;
      await Deno.writeTextFile(
        path,
        systemdUnit({
          argv: [Deno.execPath(), "run", "-A", "/x/main.ts", "daemon"],
          env: { OLLAMA_HOST: "a b" },
          user,
        }),
      );
      // The user manager wants a runtime directory, which a container or CI session may lack.
      const r = await run([tool, "verify", ...(user ? ["--user"] : []), path], {
        check: false,
        env: { XDG_RUNTIME_DIR: d.path },
      });
      // It checks syntax, that ExecStart's program exists, and the dependencies; it must say nothing.
      assertEquals(r.code, 0, r.stdout + r.stderr);
      assertEquals((r.stdout + r.stderr).trim(), "", `user=${user}`);
    }
  } finally {
    await d.cleanup();
  }
});

Deno.test({
  name: "plutil -lint accepts the plist",
  ignore: !which("plutil"),
  async fn() {
    const d = await tempDir();
    try {
      const path = `${d.path}/com.llama-mgr.daemon.plist`;
      await Deno.writeTextFile(
        path,
        launchdPlist({ argv: ["/x", "daemon"], env: { OLLAMA_HOST: "<&>" }, user: true }),
      );
      const r = await run(["plutil", "-lint", path], { check: false });
      assertEquals(r.code, 0, r.stdout + r.stderr);
    } finally {
      await d.cleanup();
    }
  },
});
if (!which("plutil")) console.log("plutil not found (macOS only): the plist is NOT linted here");

async function home(systemctl?: (log: string) => string) {
  const d = await tempDir();
  const log = `${d.path}/systemctl.log`;
  const bin = `${d.path}/bin`;
  await Deno.mkdir(bin);
  if (systemctl !== undefined) {
    await Deno.writeTextFile(`${bin}/systemctl`, `#!/bin/sh\n${systemctl(log)}\n`, { mode: 0o755 });
  }
  const env = {
    HOME: `${d.path}/home`,
    XDG_CONFIG_HOME: `${d.path}/config`,
    PATH: bin,
    LLAMA_MGR_DATA_DIR: `${d.path}/data`,
    OLLAMA_HOST: "127.0.0.1:11555",
  };
  return { d, env, unit: `${d.path}/config/systemd/user/llama-mgr.service`, log };
}

Deno.test("install-service --user writes the unit and says what to run when systemctl cannot", async (t) => {
  for (
    const [what, script, reason] of [
      ["systemctl absent", undefined, "systemctl is not on PATH"],
      [
        "systemctl failing",
        () => 'echo "Failed to connect to bus: No medium found" >&2; exit 1',
        "No medium found",
      ],
    ] as const
  ) {
    await t.step(what, async () => {
      const h = await home(script);
      try {
        const p = await cli(["daemon", "install-service", "--user", "--print"], { env: h.env });
        assertEquals(p.code, 0, p.stderr);
        assertStringIncludes(p.stdout, "ExecStart=");
        assert(!(await exists(h.unit)), "--print wrote the file");

        const i = await cli(["daemon", "install-service", "--user", "--port", "11556"], { env: h.env });
        assertEquals(i.code, 0, i.stderr);
        const text = await Deno.readTextFile(h.unit);
        assertStringIncludes(
          text,
          `-d ${h.env.LLAMA_MGR_DATA_DIR} --config ${h.env.XDG_CONFIG_HOME}/llama-mgr/config.yaml`,
        );
        assertStringIncludes(text, "daemon --port 11556\n");
        assertStringIncludes(text, "Environment=OLLAMA_HOST=127.0.0.1:11555");
        assertEquals(p.stdout.trim(), text.trim().replace(" --port 11556", ""));
        assertStringIncludes(i.stderr, reason);
        assertStringIncludes(
          i.stderr,
          "run: systemctl --user daemon-reload && systemctl --user enable --now llama-mgr.service",
        );

        // An enablement link, as `systemctl enable` would have made, goes too.
        const wants = `${h.env.XDG_CONFIG_HOME}/systemd/user/default.target.wants`;
        await Deno.mkdir(wants);
        await Deno.symlink(h.unit, `${wants}/llama-mgr.service`);
        const u = await cli(["daemon", "uninstall-service", "--user"], { env: h.env });
        assertEquals(u.code, 0, u.stderr);
        assert(!(await exists(h.unit)), "the unit is still there");
        assert(!(await exists(`${wants}/llama-mgr.service`)), "the enablement link is still there");
        assertStringIncludes(
          u.stderr,
          "run: systemctl --user stop llama-mgr.service && systemctl --user daemon-reload",
        );
        const again = await cli(["daemon", "uninstall-service", "--user"], { env: h.env });
        assertEquals(again.code, 0);
        assertStringIncludes(again.stderr, "no service installed");
      } finally {
        await h.d.cleanup();
      }
    });
  }
});

Deno.test("install-service --user enables and starts it through a working systemctl; uninstall stops it", async () => {
  const h = await home((log) => `echo "$*" >> "${log}"`);
  try {
    const i = await cli(["daemon", "install-service", "--user"], { env: h.env });
    assertEquals(i.code, 0, i.stderr);
    assert(await exists(h.unit));
    const u = await cli(["daemon", "uninstall-service", "--user"], { env: h.env });
    assertEquals(u.code, 0, u.stderr);
    assert(!(await exists(h.unit)));
    assertEquals((await Deno.readTextFile(h.log)).trim().split("\n"), [
      "--user show-environment",
      "--user daemon-reload",
      "--user enable --now llama-mgr.service",
      "--user show-environment",
      "--user disable --now llama-mgr.service",
      "--user daemon-reload",
    ]);
  } finally {
    await h.d.cleanup();
  }
});

Deno.test("daemon rejects an unknown subcommand", async () => {
  const r = await cli(["daemon", "instal-service"]);
  assertEquals(r.code, 2);
  assertStringIncludes(r.stderr, "unknown subcommand 'instal-service'");
});
