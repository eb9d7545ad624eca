/**
 * The configuration's `tls` section and the listeners' TLS level: defaults that pass an audit,
 * per-domain overrides, paths resolved against the file, and the exact error of each mistake.
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Config from "../../src/config/Config.ts"
import * as Duration from "../../src/config/Duration.ts"
import * as TlsSettings from "../../src/tls/TlsSettings.ts"

const base = "/etc/postern"
const source = "postern.config.ts"

const decode = (input: unknown) => Config.decode(input, source, base)

/** The issues of a decode that must fail. */
const issuesOf = (input: unknown): Effect.Effect<ReadonlyArray<string>> =>
  decode(input).pipe(
    Effect.flip,
    Effect.map((error) => error.issues),
    Effect.orElseSucceed(() => ["(decoded without error)"])
  )

const created: Array<string> = []

afterAll(() => {
  for (const directory of created) NodeFs.rmSync(directory, { recursive: true, force: true })
})

const hour = 3_600_000
const day = 24 * hour

/** A TLS 1.2 cipher that uses ECDHE key exchange and an AEAD cipher (AES-GCM or ChaCha20-Poly1305). */
const ecdheAead = /^ECDHE-(ECDSA|RSA)-(AES128-GCM-SHA256|AES256-GCM-SHA384|CHACHA20-POLY1305)$/

describe("ConfigTls: defaults", () => {
  it.effect("TLS 1.2 to 1.3, ECDHE with AEAD only, the server's order, 10 s handshakes, a self-signed certificate under the state directory", () =>
    Effect.gen(function*() {
      const config = yield* decode({})
      const tls = config.tls.settings
      assert.deepStrictEqual(tls.protocol, TlsSettings.defaultProtocol)
      assert.strictEqual(tls.protocol.minVersion, "TLSv1.2")
      assert.strictEqual(tls.protocol.maxVersion, "TLSv1.3")
      assert.isTrue(tls.protocol.preferServerCiphers)
      assert.strictEqual(tls.handshakeTimeout, 10_000)
      assert.isFalse(tls.requireSni)
      assert.deepStrictEqual(tls.sessionTickets, { lifetime: 2 * hour, rotation: hour })
      assert.deepStrictEqual(tls.clientCertificates, { request: false })
      assert.strictEqual(tls.expiryWarning, 14 * day)
      assert.isUndefined(tls.defaultCertificate)
      assert.deepStrictEqual(tls.domains, [])
      assert.strictEqual(config.tls.selfSignedDirectory, NodePath.join(base, "var", "tls"))
    }))

  it("the default TLS 1.2 cipher list has only ECDHE with AES-GCM or ChaCha20-Poly1305", () => {
    const ciphers = TlsSettings.defaultProtocol.ciphers.split(":")
    assert.isAtLeast(ciphers.length, 2)
    for (const cipher of ciphers) assert.match(cipher, ecdheAead)
    assert.isTrue(ciphers.some((c) => c.includes("-ECDSA-")) && ciphers.some((c) => c.includes("-RSA-")), "both key types")
  })

  it("the default TLS 1.3 suites are the AEAD suites", () => {
    for (const suite of TlsSettings.defaultProtocol.cipherSuites.split(":")) {
      assert.oneOf(suite, ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"])
    }
  })

  it.effect("the self-signed directory follows the state directory", () =>
    Effect.gen(function*() {
      const config = yield* decode({ stateDirectory: "../state" })
      assert.strictEqual(config.tls.selfSignedDirectory, "/etc/state/tls")
    }))

  it.effect("a configured certificate: no self-signed one", () =>
    Effect.gen(function*() {
      const config = yield* decode({ tls: { certificate: "/srv/tls/mx.pem", key: "/srv/tls/mx.key" } })
      assert.isUndefined(config.tls.selfSignedDirectory)
      assert.deepStrictEqual(config.tls.settings.defaultCertificate, { certificate: "/srv/tls/mx.pem", key: "/srv/tls/mx.key" })
    }))

  it.effect("domains without a default certificate: no self-signed one either (unknown names fail)", () =>
    Effect.gen(function*() {
      const config = yield* decode({
        tls: { domains: [{ names: ["mx.example.org"], certificate: "/srv/mx.pem", key: "/srv/mx.key" }] }
      })
      assert.isUndefined(config.tls.selfSignedDirectory)
      assert.isUndefined(config.tls.settings.defaultCertificate)
    }))

  it.effect("a passphrase is kept only when given", () =>
    Effect.gen(function*() {
      const config = yield* decode({ tls: { certificate: "/a.pem", key: "/a.key", passphrase: "secret" } })
      assert.deepStrictEqual(config.tls.settings.defaultCertificate, { certificate: "/a.pem", key: "/a.key", passphrase: "secret" })
    }))

  it.effect("durations and flags", () =>
    Effect.gen(function*() {
      const config = yield* decode({
        tls: {
          handshakeTimeout: "5s",
          requireSni: true,
          preferServerCiphers: false,
          sessionTickets: { lifetime: "30m" },
          expiryWarning: "30 days"
        }
      })
      const tls = config.tls.settings
      assert.strictEqual(tls.handshakeTimeout, 5_000)
      assert.isTrue(tls.requireSni)
      assert.isFalse(tls.protocol.preferServerCiphers)
      assert.deepStrictEqual(tls.sessionTickets, { lifetime: 30 * 60_000, rotation: hour })
      assert.strictEqual(tls.expiryWarning, 30 * day)
    }))
})

describe("ConfigTls: listener security", () => {
  it.effect("smtp: may, submission: encrypt, submissions: implicit", () =>
    Effect.gen(function*() {
      const config = yield* decode({
        listeners: [{ port: 25, role: "smtp" }, { port: 587, role: "submission" }, { port: 465, role: "submissions" }]
      })
      assert.deepStrictEqual(config.listeners.map((l) => [l.role, l.security]), [
        ["smtp", "may"],
        ["submission", "encrypt"],
        ["submissions", "implicit"]
      ])
    }))

  const explicit: ReadonlyArray<readonly [string, string, string]> = [
    ["smtp", "none", "none"],
    ["smtp", "encrypt", "encrypt"],
    ["submission", "none", "none"],
    ["submission", "may", "may"],
    // A submissions listener is TLS from the first byte whatever its level says.
    ["submissions", "none", "implicit"]
  ]
  for (const [role, level, security] of explicit) {
    it.effect(`${role} with tls: "${level}" → ${security}`, () =>
      Effect.gen(function*() {
        const config = yield* decode({ listeners: [{ port: 2525, role, tls: level }] })
        assert.strictEqual(config.listeners[0]?.security, security)
      }))
  }
})

describe("ConfigTls: domains", () => {
  it.effect("a domain's versions are merged over the server's settings", () =>
    Effect.gen(function*() {
      const config = yield* decode({
        tls: {
          certificate: "default.pem",
          key: "default.key",
          ciphers: "ECDHE-RSA-AES256-GCM-SHA384",
          groups: "X25519",
          domains: [
            { names: ["MX.Example.ORG", "*.Example.org"], certificate: "mx.pem", key: "mx.key", minVersion: "TLSv1.3", passphrase: "pw" },
            { names: ["other.example.org"], certificate: "/abs/other.pem", key: "/abs/other.key", maxVersion: "TLSv1.2" }
          ]
        }
      })
      const server = config.tls.settings.protocol
      assert.deepStrictEqual(server, {
        ...TlsSettings.defaultProtocol,
        ciphers: "ECDHE-RSA-AES256-GCM-SHA384",
        groups: "X25519"
      })
      assert.deepStrictEqual(config.tls.settings.domains, [
        {
          names: ["mx.example.org", "*.example.org"],
          files: { certificate: "/etc/postern/mx.pem", key: "/etc/postern/mx.key", passphrase: "pw" },
          protocol: { ...server, minVersion: "TLSv1.3" }
        },
        {
          names: ["other.example.org"],
          files: { certificate: "/abs/other.pem", key: "/abs/other.key" },
          protocol: { ...server, maxVersion: "TLSv1.2" }
        }
      ])
    }))
})

describe("ConfigTls: paths", () => {
  it.effect("relative paths resolve against the base directory, absolute ones are kept", () =>
    Effect.gen(function*() {
      const config = yield* decode({
        tls: {
          certificate: "tls/mx.pem",
          key: "../keys/mx.key",
          clientCertificates: { request: true, ca: "tls/clients-ca.pem" },
          domains: [{ names: ["a.example.org"], certificate: "/srv/a.pem", key: "a.key" }]
        }
      })
      assert.deepStrictEqual(config.tls.settings.defaultCertificate, {
        certificate: "/etc/postern/tls/mx.pem",
        key: "/etc/keys/mx.key"
      })
      assert.deepStrictEqual(config.tls.settings.clientCertificates, { request: true, ca: "/etc/postern/tls/clients-ca.pem" })
      assert.deepStrictEqual(config.tls.settings.domains[0]?.files, { certificate: "/srv/a.pem", key: "/etc/postern/a.key" })
    }))

  it.effect("a configuration file's relative paths resolve against its own directory", () =>
    Effect.gen(function*() {
      const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "postern-config-tls-"))
      created.push(directory)
      const file = NodePath.join(directory, "etc", "postern.config.ts")
      NodeFs.mkdirSync(NodePath.dirname(file), { recursive: true })
      NodeFs.writeFileSync(
        file,
        `export default {
  stateDirectory: "../state",
  tls: { certificate: "tls/mx.pem", key: "tls/mx.key", domains: [{ names: ["b.example.org"], certificate: "b.pem", key: "b.key" }] }
}
`
      )
      const config = yield* Config.load(file)
      const etc = NodePath.join(directory, "etc")
      assert.deepStrictEqual(config.tls.settings.defaultCertificate, {
        certificate: NodePath.join(etc, "tls/mx.pem"),
        key: NodePath.join(etc, "tls/mx.key")
      })
      assert.deepStrictEqual(config.tls.settings.domains[0]?.files, {
        certificate: NodePath.join(etc, "b.pem"),
        key: NodePath.join(etc, "b.key")
      })
      assert.isUndefined(config.tls.selfSignedDirectory)
    }))

  it.effect("without certificates, a file's self-signed directory is under its state directory", () =>
    Effect.gen(function*() {
      const directory = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "postern-config-tls-"))
      created.push(directory)
      const file = NodePath.join(directory, "postern.config.ts")
      NodeFs.writeFileSync(file, `export default { stateDirectory: "state" }\n`)
      const config = yield* Config.load(file)
      assert.strictEqual(config.tls.selfSignedDirectory, NodePath.join(directory, "state", "tls"))
    }))
})

describe("ConfigTls: errors", () => {
  const versions = "expected \"TLSv1.2\" or \"TLSv1.3\" (older versions are never offered)"
  const serverName = "expected a server name such as \"mail.example.org\" or a wildcard such as \"*.example.org\""
  const domain = (fields: Record<string, unknown>) => ({
    tls: { domains: [{ names: ["mx.example.org"], certificate: "mx.pem", key: "mx.key", ...fields }] }
  })
  const cases: ReadonlyArray<readonly [string, unknown, ReadonlyArray<string>]> = [
    ["minVersion TLSv1.1", { tls: { minVersion: "TLSv1.1" } }, [`tls.minVersion: ${versions}, got "TLSv1.1"`]],
    ["minVersion TLSv1", { tls: { minVersion: "TLSv1" } }, [`tls.minVersion: ${versions}, got "TLSv1"`]],
    ["maxVersion SSLv3", { tls: { maxVersion: "SSLv3" } }, [`tls.maxVersion: ${versions}, got "SSLv3"`]],
    [
      "minVersion above maxVersion",
      { tls: { minVersion: "TLSv1.3", maxVersion: "TLSv1.2" } },
      ["tls: expected minVersion at most maxVersion, got TLSv1.3 > TLSv1.2"]
    ],
    ["a certificate without its key", { tls: { certificate: "mx.pem" } }, ["tls: expected both certificate and key, or neither"]],
    ["a key without its certificate", { tls: { key: "mx.key" } }, ["tls: expected both certificate and key, or neither"]],
    [
      "client certificates requested without a CA",
      { tls: { clientCertificates: { request: true } } },
      ["tls: expected clientCertificates.ca (the CA file to verify client certificates with) when clientCertificates.request is true"]
    ],
    ["a bad server name", domain({ names: ["mx example.org"] }), [`tls.domains[0].names[0]: ${serverName}, got "mx example.org"`]],
    ["a wildcard in the middle", domain({ names: ["mx.*.example.org"] }), [`tls.domains[0].names[0]: ${serverName}, got "mx.*.example.org"`]],
    ["an empty names list", domain({ names: [] }), ["tls.domains[0].names: expected at least one name, got none"]],
    ["a domain without its key", { tls: { domains: [{ names: ["mx.example.org"], certificate: "mx.pem" }] } }, ["tls.domains[0].key: required but missing"]],
    ["a domain's minVersion TLSv1.1", domain({ minVersion: "TLSv1.1" }), [`tls.domains[0].minVersion: ${versions}, got "TLSv1.1"`]],
    [
      "a domain's minVersion above its maxVersion",
      domain({ minVersion: "TLSv1.3", maxVersion: "TLSv1.2" }),
      ["tls.domains[0]: expected minVersion at most maxVersion, got TLSv1.3 > TLSv1.2"]
    ],
    [
      "a domain's minVersion above the server's maxVersion once merged",
      { tls: { maxVersion: "TLSv1.2", domains: [{ names: ["a.example.org"], certificate: "/a", key: "/b", minVersion: "TLSv1.3" }] } },
      ["tls.domains[0]: expected minVersion at most maxVersion once merged with the server's, got TLSv1.3 > TLSv1.2"]
    ],
    [
      "a domain's maxVersion below the server's minVersion once merged",
      { tls: { minVersion: "TLSv1.3", domains: [{ names: ["a.example.org"], certificate: "/a", key: "/b", maxVersion: "TLSv1.2" }] } },
      ["tls.domains[0]: expected minVersion at most maxVersion once merged with the server's, got TLSv1.3 > TLSv1.2"]
    ],
    ["an empty cipher list", { tls: { ciphers: " " } }, ["tls.ciphers: expected an OpenSSL cipher list, got \" \""]],
    ["a zero handshake timeout", { tls: { handshakeTimeout: 0 } }, [`tls.handshakeTimeout: expected ${Duration.expectedPositive}, got 0`]],
    [
      "a domain's own cipher list (one secure context per listener: only versions vary by domain)",
      domain({ ciphers: "ECDHE-RSA-AES128-GCM-SHA256" }),
      ["tls.domains[0].ciphers: unknown setting; expected one of: names, certificate, key, passphrase, minVersion, maxVersion"]
    ],
    ["a listener level of implicit", { listeners: [{ port: 465, role: "smtp", tls: "implicit" }] }, ["listeners[0].tls: expected one of \"none\", \"may\", \"encrypt\", got \"implicit\""]]
  ]
  for (const [name, input, expected] of cases) {
    it.effect(name, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* issuesOf(input), expected)
      }))
  }

  it.effect("the message names the file, the path and the value", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(decode({ tls: { minVersion: "TLSv1.1" } }))
      assert.strictEqual(error.message, `${source}: tls.minVersion: ${versions}, got "TLSv1.1"`)
    }))
})
