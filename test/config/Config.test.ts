import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Result } from "effect"
import { afterAll } from "vitest"
import * as NodeChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as NodeUrl from "node:url"
import * as Config from "../../src/config/Config.ts"
import * as Duration from "../../src/config/Duration.ts"

const repoRoot = NodePath.resolve(import.meta.dirname, "../..")
const indexUrl = NodeUrl.pathToFileURL(NodePath.join(repoRoot, "src/index.ts")).href

const created: Array<string> = []

const tempDirectory = (): string => {
  const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "postern-config-"))
  created.push(directory)
  return directory
}

afterAll(() => {
  for (const directory of created) NodeFs.rmSync(directory, { recursive: true, force: true })
})

const writeFile = (directory: string, name: string, content: string): string => {
  const file = NodePath.join(directory, name)
  NodeFs.mkdirSync(NodePath.dirname(file), { recursive: true })
  NodeFs.writeFileSync(file, content)
  return file
}

/** The issues of a decode that must fail. */
const issuesOf = (input: unknown): Effect.Effect<ReadonlyArray<string>> =>
  Config.decode(input, "postern.config.ts").pipe(
    Effect.flip,
    Effect.map((error) => error.issues),
    Effect.orElseSucceed(() => ["(decoded without error)"])
  )

const listener = (fields: Record<string, unknown>) => ({ listeners: [{ port: 2525, role: "smtp", ...fields }] })

describe("Config defaults", () => {
  it.effect("the embedded default decodes with no file", () =>
    Effect.gen(function*() {
      const config = yield* Config.load(undefined)
      assert.deepStrictEqual(config.listeners, [
        { address: "127.0.0.1", port: 2525, role: "smtp", security: "may", auth: false },
        { address: "127.0.0.1", port: 2587, role: "submission", security: "encrypt", auth: true },
        { address: "127.0.0.1", port: 2465, role: "submissions", security: "implicit", auth: true }
      ])
      assert.deepStrictEqual(config.localDomains, [{ domain: "localhost", users: "*", transport: "maildir" }])
      assert.deepStrictEqual(config.limits, {
        messageSize: 10_240_000,
        recipients: 100,
        errors: 10,
        connections: 20_000,
        connectionsPerClient: 200,
        lineLength: 512,
        lineDiscard: 65_536
      })
      assert.deepStrictEqual(config.timeouts, {
        command: 300_000,
        dataBlock: 180_000,
        dataEnd: 600_000,
        shutdownGrace: 30_000,
        deliveryRetry: 300_000
      })
      assert.deepStrictEqual(config.log, {
        directory: NodePath.resolve("var/log"),
        fsync: "interval",
        fsyncInterval: 10,
        rotateSize: 64 * 1024 * 1024
      })
      assert.deepStrictEqual(config.spool, { directory: NodePath.resolve("var/spool"), segmentSize: 64 * 1024 * 1024 })
      assert.strictEqual(config.stateDirectory, NodePath.resolve("var"))
      assert.strictEqual(config.maildirRoot, NodePath.resolve("var/mail"))
      assert.strictEqual(config.reverseDns, false)
      assert.deepStrictEqual(config, Config.defaults)
    }))

  it.effect("hostname defaults to os.hostname() and workers to os.availableParallelism()", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode({}, "test")
      assert.strictEqual(config.hostname, NodeOs.hostname())
      assert.strictEqual(config.workers, NodeOs.availableParallelism())
      assert.strictEqual(config.ioThreadNice, 10)
    }))

  it.effect("values given replace defaults and are normalised", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode({
        hostname: "mx.example.org",
        workers: 3,
        ioThreadNice: 0,
        localDomains: [{ domain: "Example.ORG", users: ["Alice", "bob"] }],
        listeners: [{
          address: "::1",
          port: 25,
          role: "smtp",
          proxyProtocol: { trustedNetworks: ["10.0.0.0/8", "192.0.2.7", "2001:DB8::/32"] }
        }],
        limits: { messageSize: 1_000 },
        log: { fsync: "interval", fsyncInterval: "50ms" },
        reverseDns: true
      }, "test")
      assert.strictEqual(config.hostname, "mx.example.org")
      assert.strictEqual(config.workers, 3)
      assert.strictEqual(config.ioThreadNice, 0)
      assert.deepStrictEqual(config.localDomains, [{ domain: "example.org", users: ["alice", "bob"], transport: "maildir" }])
      assert.deepStrictEqual(config.listeners[0]?.proxyProtocol?.trustedNetworks, [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32"
      ])
      assert.strictEqual(config.limits.messageSize, 1_000)
      assert.strictEqual(config.limits.recipients, 100)
      assert.strictEqual(config.log.fsyncInterval, 50)
      assert.strictEqual(config.reverseDns, true)
    }))

  it.effect("machineSettings carries what the session machine needs", () =>
    Effect.gen(function*() {
      const config = yield* Config.decode({ hostname: "mx.example.org", limits: { errors: 3 } }, "test")
      assert.deepStrictEqual(Config.machineSettings(config), {
        hostname: "mx.example.org",
        maxMessageSize: 10_240_000,
        maxRecipients: 100,
        maxErrors: 3,
        localDomains: [{ domain: "localhost", users: "*", transport: "maildir" }],
        authPlaintext: false,
        authMaxFailures: 3
      })
    }))
})

describe("Config errors", () => {
  const D = Duration.expectedPositive
  const cidr = "a network in CIDR notation such as \"10.0.0.0/8\" or \"2001:db8::/32\""
  const cases: ReadonlyArray<readonly [string, unknown, string]> = [
    ["port 0", listener({ port: 0 }), "listeners[0].port: expected an integer from 1 to 65535, got 0"],
    ["port 70000", listener({ port: 70000 }), "listeners[0].port: expected an integer from 1 to 65535, got 70000"],
    ["port \"x\"", listener({ port: "x" }), "listeners[0].port: expected an integer from 1 to 65535, got \"x\""],
    ["port 25.5", listener({ port: 25.5 }), "listeners[0].port: expected an integer from 1 to 65535, got 25.5"],
    [
      "role \"mx\"",
      listener({ role: "mx" }),
      "listeners[0].role: expected one of \"smtp\", \"submission\", \"submissions\", got \"mx\""
    ],
    ["missing port", { listeners: [{ role: "smtp" }] }, "listeners[0].port: required but missing"],
    ["no listeners", { listeners: [] }, "listeners: expected at least one listener, got none"],
    ["listeners not a list", { listeners: "x" }, "listeners: expected a list of listeners, got \"x\""],
    [
      "duplicate listeners",
      { listeners: [{ port: 25, role: "smtp" }, { address: "127.0.0.1", port: 25, role: "submission" }] },
      "listeners[1]: expected a unique address and port, got \"127.0.0.1:25\" again (first at index 0)"
    ],
    [
      "bad CIDR",
      listener({ proxyProtocol: { trustedNetworks: ["10.0.0.300/8"] } }),
      `listeners[0].proxyProtocol.trustedNetworks[0]: expected ${cidr} (octets must be at most 255), got "10.0.0.300/8"`
    ],
    [
      "CIDR with host bits",
      listener({ proxyProtocol: { trustedNetworks: ["10.0.0.1/8"] } }),
      `listeners[0].proxyProtocol.trustedNetworks[0]: expected ${cidr} (address has non-zero host bits), got "10.0.0.1/8"`
    ],
    [
      "no trusted networks",
      listener({ proxyProtocol: { trustedNetworks: [] } }),
      "listeners[0].proxyProtocol.trustedNetworks: expected at least one network, got none"
    ],
    ["messageSize -1", { limits: { messageSize: -1 } }, "limits.messageSize: expected a positive integer, got -1"],
    ["messageSize -5", { limits: { messageSize: -5 } }, "limits.messageSize: expected a positive integer, got -5"],
    ["recipients 0", { limits: { recipients: 0 } }, "limits.recipients: expected a positive integer, got 0"],
    ["lineLength 100", { limits: { lineLength: 100 } }, "limits.lineLength: expected an integer of at least 512, got 100"],
    ["lineDiscard -1", { limits: { lineDiscard: -1 } }, "limits.lineDiscard: expected a non-negative integer, got -1"],
    ["duration \"5 parsecs\"", { timeouts: { command: "5 parsecs" } }, `timeouts.command: expected ${D}, got "5 parsecs"`],
    ["duration without unit", { timeouts: { dataEnd: "300" } }, `timeouts.dataEnd: expected ${D}, got "300"`],
    ["duration 0", { timeouts: { dataBlock: 0 } }, `timeouts.dataBlock: expected ${D}, got 0`],
    [
      "negative grace",
      { timeouts: { shutdownGrace: -1 } },
      `timeouts.shutdownGrace: expected ${Duration.expected}, got -1`
    ],
    ["workers 0", { workers: 0 }, "workers: expected a positive integer or \"auto\", got 0"],
    ["workers \"many\"", { workers: "many" }, "workers: expected a positive integer or \"auto\", got \"many\""],
    ["ioThreadNice -1", { ioThreadNice: -1 }, "ioThreadNice: expected an integer from 0 to 19, got -1"],
    ["ioThreadNice 20", { ioThreadNice: 20 }, "ioThreadNice: expected an integer from 0 to 19, got 20"],
    ["ioThreadNice 2.5", { ioThreadNice: 2.5 }, "ioThreadNice: expected an integer from 0 to 19, got 2.5"],
    [
      "duplicate domains",
      { localDomains: [{ domain: "Example.org", users: "*" }, { domain: "example.ORG", users: "*" }] },
      "localDomains[1]: expected a unique domain, got \"example.org\" again (first at index 0)"
    ],
    [
      "duplicate users",
      { localDomains: [{ domain: "example.org", users: ["Alice", "alice"] }] },
      "localDomains[0].users[1]: expected a unique user, got \"alice\" again (first at index 0)"
    ],
    [
      "bad domain",
      { localDomains: [{ domain: "exa mple.org", users: "*" }] },
      "localDomains[0].domain: expected a domain name such as \"example.org\", got \"exa mple.org\""
    ],
    [
      "bad users",
      { localDomains: [{ domain: "example.org", users: 5 }] },
      "localDomains[0].users: expected \"*\" or a list of local parts, got 5"
    ],
    [
      "bad transport",
      { localDomains: [{ domain: "example.org", users: "*", transport: "mbox" }] },
      "localDomains[0].transport: expected one of \"maildir\", \"discard\", got \"mbox\""
    ],
    ["bad fsync", { log: { fsync: "sometimes" } }, "log.fsync: expected one of \"always\", \"interval\", \"never\", got \"sometimes\""],
    ["empty path", { spool: { directory: "" } }, "spool.directory: expected a non-empty path, got \"\""],
    ["reverseDns \"yes\"", { reverseDns: "yes" }, "reverseDns: expected true or false, got \"yes\""],
    ["empty hostname", { hostname: "" }, "hostname: expected a host name such as \"mx.example.org\", got \"\""],
    [
      "misspelt setting",
      { limits: { mesageSize: 5 } },
      "limits.mesageSize: unknown setting; expected one of: messageSize, recipients, errors, connections, connectionsPerClient, lineLength, lineDiscard"
    ],
    [
      "not an object",
      5,
      "expected an object (the configuration), as `export default defineConfig({ ... })`, got 5"
    ]
  ]
  for (const [name, input, expected] of cases) {
    it.effect(name, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* issuesOf(input), [expected])
      }))
  }

  it.effect("every bad value of a file is reported at once, the message naming the source", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Config.decode({ limits: { messageSize: -5 }, timeouts: { command: "5 parsecs" }, workers: 0 }, "postern.config.ts")
      )
      assert.strictEqual(error._tag, "ConfigError")
      assert.strictEqual(error.source, "postern.config.ts")
      assert.strictEqual(
        error.message,
        [
          "postern.config.ts: limits.messageSize: expected a positive integer, got -5",
          `postern.config.ts: timeouts.command: expected ${D}, got "5 parsecs"`,
          "postern.config.ts: workers: expected a positive integer or \"auto\", got 0"
        ].join("\n")
      )
    }))
})

describe("Config files", () => {
  it.effect("loads a .ts file using defineConfig, with paths relative to the file", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const file = writeFile(
        directory,
        "etc/postern.config.ts",
        `import { defineConfig, type ConfigInput } from ${JSON.stringify(indexUrl)}
const port: number = 2600
const input: ConfigInput = {
  hostname: "mx.example.org",
  listeners: [{ port, role: "submissions" }],
  stateDirectory: "../state",
  log: { directory: "/var/log/postern" },
  timeouts: { command: "1m" }
}
export default defineConfig(input)
`
      )
      const config = yield* Config.load(file)
      assert.strictEqual(config.hostname, "mx.example.org")
      assert.deepStrictEqual(config.listeners, [{ address: "127.0.0.1", port: 2600, role: "submissions", security: "implicit", auth: true }])
      assert.strictEqual(config.stateDirectory, NodePath.join(directory, "state"))
      assert.strictEqual(config.spool.directory, NodePath.join(directory, "state/spool"))
      assert.strictEqual(config.maildirRoot, NodePath.join(directory, "state/mail"))
      assert.strictEqual(config.log.directory, "/var/log/postern")
      assert.strictEqual(config.timeouts.command, 60_000)
    }))

  it.effect("loads a plain object default export", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const file = writeFile(
        directory,
        "postern.config.ts",
        `export default { localDomains: [{ domain: "example.net", users: ["postmaster"] }], maildirRoot: "mail" }\n`
      )
      const config = yield* Config.load(file)
      assert.deepStrictEqual(config.localDomains, [{ domain: "example.net", users: ["postmaster"], transport: "maildir" }])
      assert.strictEqual(config.maildirRoot, NodePath.join(directory, "mail"))
    }))

  it.effect("a reload sees the file as it is now", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const file = writeFile(directory, "postern.config.ts", `export default { limits: { recipients: 5 } }\n`)
      assert.strictEqual((yield* Config.load(file)).limits.recipients, 5)
      writeFile(directory, "postern.config.ts", `export default { limits: { recipients: 7 } }\n`)
      assert.strictEqual((yield* Config.load(file)).limits.recipients, 7)
    }))

  it.effect("a bad value in a file names the file", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const file = writeFile(directory, "postern.config.ts", `export default { limits: { messageSize: -5 } }\n`)
      const error = yield* Effect.flip(Config.load(file))
      assert.strictEqual(error.message, `${file}: limits.messageSize: expected a positive integer, got -5`)
    }))

  it.effect("a file with a syntax error is a ConfigError naming the file", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const file = writeFile(directory, "postern.config.ts", `export default { limits: { messageSize: 5 }\n`)
      const error = yield* Effect.flip(Config.load(file))
      assert.strictEqual(error._tag, "ConfigError")
      assert.strictEqual(error.source, file)
      assert.match(error.issues[0] ?? "", /^cannot be loaded: /)
      assert.include(error.message, file)
    }))

  it.effect("a file without a default export is a ConfigError naming the file", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const file = writeFile(directory, "postern.config.ts", `export const config = { limits: { messageSize: 5 } }\n`)
      const error = yield* Effect.flip(Config.load(file))
      assert.strictEqual(error.source, file)
      assert.deepStrictEqual(error.issues, ["has no default export; end it with `export default defineConfig({ ... })`"])
    }))

  it.effect("a missing file is a ConfigError naming the file", () =>
    Effect.gen(function*() {
      const file = NodePath.join(tempDirectory(), "absent.config.ts")
      const error = yield* Effect.flip(Config.load(file))
      assert.strictEqual(error.source, file)
      assert.deepStrictEqual(error.issues, [`no such file: ${file}`])
    }))

  it.effect("the documented example decodes", () =>
    Effect.gen(function*() {
      const config = yield* Config.load(NodePath.join(repoRoot, "postern.config.example.ts"))
      assert.strictEqual(config.hostname, "mx.example.org")
      assert.deepStrictEqual(config.listeners.map((l) => `${l.role}/${l.security}`), [
        "smtp/may",
        "submission/encrypt",
        "submissions/implicit",
        "smtp/may"
      ])
      assert.strictEqual(config.tls.settings.defaultCertificate?.certificate, "/etc/postern/tls/mx.example.org.pem")
      assert.deepStrictEqual(config.tls.settings.domains.map((d) => d.names), [["mail.example.net", "*.example.net"]])
      assert.strictEqual(config.tls.settings.domains[0]?.protocol.minVersion, "TLSv1.3")
      assert.strictEqual(config.tls.selfSignedDirectory, undefined)
      assert.strictEqual(config.stateDirectory, NodePath.join(repoRoot, "var"))
      assert.deepStrictEqual(config.limits, Config.defaults.limits)
      assert.deepStrictEqual(config.timeouts, Config.defaults.timeouts)
    }))

  it("Node itself loads a file outside any project that imports defineConfig from \"postern\"", () => {
    const directory = tempDirectory()
    const file = writeFile(
      directory,
      "postern.config.ts",
      `import { defineConfig } from "postern"
export default defineConfig({ hostname: "outside.example", limits: { recipients: 9 } })
`
    )
    const configUrl = NodeUrl.pathToFileURL(NodePath.join(repoRoot, "src/config/Config.ts")).href
    const script = `
const { Effect } = await import("effect")
const Config = await import(${JSON.stringify(configUrl)})
const config = await Effect.runPromise(Config.load(${JSON.stringify(file)}))
process.stdout.write(JSON.stringify({ hostname: config.hostname, recipients: config.limits.recipients }))
`
    const out = NodeChildProcess.execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: repoRoot,
      encoding: "utf8"
    })
    assert.deepStrictEqual(JSON.parse(out), { hostname: "outside.example", recipients: 9 })
  })
})

describe("Config service and check", () => {
  it.effect("layerValue provides the configuration given", () =>
    Effect.gen(function*() {
      const config = yield* Config.Config
      assert.strictEqual(config, Config.defaults)
    }).pipe(Effect.provide(Config.Config.layerValue(Config.defaults))))

  it.effect("layer loads the file and fails with its ConfigError", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const good = writeFile(directory, "good.config.ts", `export default { workers: 2 }\n`)
      const bad = writeFile(directory, "bad.config.ts", `export default { workers: 0 }\n`)
      const config = yield* Effect.provide(
        Effect.gen(function*() {
          return yield* Config.Config
        }),
        Config.Config.layer(good)
      )
      assert.strictEqual(config.workers, 2)
      const result = yield* Effect.result(Layer.build(Config.Config.layer(bad)))
      assert.isTrue(Result.isFailure(result))
      if (Result.isFailure(result)) assert.strictEqual(result.failure.source, bad)
    }))

  it.effect("check summarises listeners, domains, paths and limits", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const file = writeFile(
        directory,
        "postern.config.ts",
        `export default {
  hostname: "mx.example.org",
  listeners: [{ address: "0.0.0.0", port: 25, role: "smtp", proxyProtocol: { trustedNetworks: ["10.0.0.0/8"] } }],
  localDomains: [{ domain: "example.org", users: ["alice", "bob"] }],
  limits: { messageSize: 2048 }
}
`
      )
      const text = yield* Config.check(file)
      assert.include(text, `configuration: ${file}`)
      assert.include(text, "hostname: mx.example.org")
      assert.include(text, "smtp         0.0.0.0:25             STARTTLS may  PROXY protocol from 10.0.0.0/8")
      assert.include(text, "default certificate: self-signed, kept in")
      assert.include(text, "example.org")
      assert.include(text, "alice, bob -> maildir")
      assert.include(text, `spool   ${NodePath.join(directory, "var/spool")}`)
      assert.include(text, "message size 2048 bytes")
      assert.include(text, "command 5m")
    }))

  it.effect("check fails with the same ConfigError as load", () =>
    Effect.gen(function*() {
      const directory = tempDirectory()
      const file = writeFile(directory, "postern.config.ts", `export default { workers: "many" }\n`)
      const error = yield* Effect.flip(Config.check(file))
      assert.deepStrictEqual(error.issues, ["workers: expected a positive integer or \"auto\", got \"many\""])
    }))
})
